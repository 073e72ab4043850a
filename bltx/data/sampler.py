"""A resumable, shard-aware shuffling sampler.

Each epoch is an order of the window indices drawn from `(seed, epoch)`, so it can be
recomputed from two integers instead of stored. A step takes the next `batch_size * world`
indices of the epoch stream (running on into the next epoch when one ends) and rank r keeps
its own contiguous `batch_size` slice: the ranks together see exactly what one process with
the global batch would. The state is `(epoch, cursor)`: saving it in a checkpoint and
loading it makes a resumed run see exactly the bytes the uninterrupted run would.

The order is a permutation of all windows (`shuffle_buffer = 0`) or, for corpora whose
chunks are costly to decode (Parquet row groups, Arrow batches), a local shuffle: blocks of
`shuffle_buffer / BLOCKS_PER_GROUP` consecutive windows in a random order, and the windows
of each group of `BLOCKS_PER_GROUP` blocks shuffled together. Reads then stay within a few
places of the corpus at a time, and a group's order is built only when it is reached.
"""

from __future__ import annotations

import numpy as np

from bltx.errors import CheckpointError

BLOCKS_PER_GROUP = 8


class EpochOrder:
    """The order of `n` windows in one epoch; `take(lo, hi)` gives positions [lo, hi)."""

    def __init__(self, n: int, seed: int, epoch: int, shuffle_buffer: int = 0):
        self.n = n
        self.key = [seed, epoch]
        self.block = max(1, shuffle_buffer // BLOCKS_PER_GROUP)
        self.local = 0 < shuffle_buffer < n
        if not self.local:
            self.perm = np.random.default_rng(self.key).permutation(n)
            return
        n_blocks = -(-n // self.block)
        self.blocks = np.random.default_rng(self.key).permutation(n_blocks)
        sizes = np.minimum(self.block, n - self.blocks * self.block)
        group_sizes = np.add.reduceat(sizes, np.arange(0, n_blocks, BLOCKS_PER_GROUP))
        self.group_ends = np.cumsum(group_sizes)
        self._group, self._order = -1, np.empty(0, dtype=np.int64)

    def _group_order(self, g: int) -> np.ndarray:
        if g != self._group:
            blocks = self.blocks[g * BLOCKS_PER_GROUP : (g + 1) * BLOCKS_PER_GROUP]
            windows = np.concatenate([np.arange(b * self.block, min((b + 1) * self.block, self.n)) for b in blocks])
            self._order = np.random.default_rng([*self.key, g + 1]).permutation(windows)
            self._group = g
        return self._order

    def take(self, lo: int, hi: int) -> np.ndarray:
        if not self.local:
            return self.perm[lo:hi]
        parts, hi = [], min(hi, self.n)
        while lo < hi:
            g = int(np.searchsorted(self.group_ends, lo, side="right"))
            start = int(self.group_ends[g - 1]) if g else 0
            stop = min(hi, int(self.group_ends[g]))
            parts.append(self._group_order(g)[lo - start : stop - start])
            lo = stop
        return np.concatenate(parts) if parts else np.empty(0, dtype=np.int64)


class ResumableSampler:
    """Yields per-rank index batches; `state_dict()`/`load_state_dict()` for checkpoints."""

    def __init__(self, num_items: int, batch_size: int, seed: int = 0, rank: int = 0, world: int = 1,
                 shuffle_buffer: int = 0):
        if num_items < 1:
            raise ValueError("sampler needs at least one item")
        self.num_items = num_items
        self.batch_size = batch_size
        self.seed = seed
        self.rank = rank
        self.world = world
        self.shuffle_buffer = shuffle_buffer
        self.epoch = 0
        self.cursor = 0  # next position within the current epoch's order
        self._order: EpochOrder | None = None

    def _epoch_order(self) -> EpochOrder:
        if self._order is None or self._order.key != [self.seed, self.epoch]:
            self._order = EpochOrder(self.num_items, self.seed, self.epoch, self.shuffle_buffer)
        return self._order

    def take(self, count: int) -> np.ndarray:
        """The next `count` indices of the epoch stream (all ranks' together)."""
        taken: list[np.ndarray] = []
        while count > 0:
            part = self._epoch_order().take(self.cursor, self.cursor + count)
            taken.append(part)
            count -= len(part)
            self.cursor += len(part)
            if self.cursor >= self.num_items:
                self.epoch += 1
                self.cursor = 0
        return np.concatenate(taken) if taken else np.empty(0, dtype=np.int64)

    def next_indices(self) -> np.ndarray:
        """The global batch of the next step, then this rank's slice of it."""
        global_batch = self.take(self.batch_size * self.world)
        lo = self.rank * self.batch_size
        return global_batch[lo : lo + self.batch_size]

    def next_pairs(self) -> np.ndarray:
        """This rank's windows of the next step as (source 0, window) rows [batch, 2]."""
        idx = self.next_indices()
        return np.stack([np.zeros_like(idx), idx], axis=1)

    def state_dict(self) -> dict:
        # Global state only (no rank): a run may resume on another number of ranks.
        state = {"epoch": self.epoch, "cursor": self.cursor, "seed": self.seed, "num_items": self.num_items}
        if self.shuffle_buffer:
            state["shuffle_buffer"] = self.shuffle_buffer
        return state

    def load_state_dict(self, state: dict) -> None:
        if int(state["num_items"]) != self.num_items:
            raise CheckpointError(
                f"checkpoint's data has {state['num_items']} windows but this run has "
                f"{self.num_items}; resume with the same data.paths and data.seq_len"
            )
        if int(state.get("shuffle_buffer", 0)) != self.shuffle_buffer:
            raise CheckpointError(
                f"checkpoint's data order used data.shuffle_buffer = {state.get('shuffle_buffer', 0)}, "
                f"this run {self.shuffle_buffer}; resume with the same value"
            )
        self.seed = int(state["seed"])
        self.epoch = int(state["epoch"])
        self.cursor = int(state["cursor"])
