"""A resumable, shard-aware shuffling sampler.

Each epoch is a permutation of the window indices drawn from `(seed, epoch)`, so it can be
recomputed from two integers instead of stored. A step takes the next `batch_size * world`
indices of the epoch stream (running on into the next epoch when one ends) and rank r keeps
its own contiguous `batch_size` slice: the ranks together see exactly what one process with
the global batch would. The state is `(epoch, cursor)`: saving it in a checkpoint and
loading it makes a resumed run see exactly the bytes the uninterrupted run would.
"""

from __future__ import annotations

import numpy as np

from bltx.errors import CheckpointError


class ResumableSampler:
    """Yields per-rank index batches; `state_dict()`/`load_state_dict()` for checkpoints."""

    def __init__(self, num_items: int, batch_size: int, seed: int = 0, rank: int = 0, world: int = 1):
        if num_items < 1:
            raise ValueError("sampler needs at least one item")
        self.num_items = num_items
        self.batch_size = batch_size
        self.seed = seed
        self.rank = rank
        self.world = world
        self.epoch = 0
        self.cursor = 0  # next position within the current epoch's permutation
        self._perm_epoch = -1
        self._perm = np.empty(0, dtype=np.int64)

    def _permutation(self, epoch: int) -> np.ndarray:
        if epoch != self._perm_epoch:
            rng = np.random.default_rng([self.seed, epoch])
            self._perm = rng.permutation(self.num_items)
            self._perm_epoch = epoch
        return self._perm

    def next_indices(self) -> np.ndarray:
        """The global batch of the next step, then this rank's slice of it."""
        need = self.batch_size * self.world
        taken: list[np.ndarray] = []
        while need > 0:
            perm = self._permutation(self.epoch)
            part = perm[self.cursor : self.cursor + need]
            taken.append(part)
            need -= len(part)
            self.cursor += len(part)
            if self.cursor >= self.num_items:
                self.epoch += 1
                self.cursor = 0
        global_batch = np.concatenate(taken)
        lo = self.rank * self.batch_size
        return global_batch[lo : lo + self.batch_size]

    def state_dict(self) -> dict:
        # Global state only (no rank): a run may resume on another number of ranks.
        return {"epoch": self.epoch, "cursor": self.cursor, "seed": self.seed, "num_items": self.num_items}

    def load_state_dict(self, state: dict) -> None:
        if int(state["num_items"]) != self.num_items:
            raise CheckpointError(
                f"checkpoint's data has {state['num_items']} windows but this run has "
                f"{self.num_items}; resume with the same data.paths and data.seq_len"
            )
        self.seed = int(state["seed"])
        self.epoch = int(state["epoch"])
        self.cursor = int(state["cursor"])
