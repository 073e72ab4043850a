"""Cached generation for learned chunking (`model.type = "learned_blt"`,
bltx/model/learned_blt.py): boundaries decided online, every part stepped through its cache
protocol (bltx/model/cache.py), in the order of the model's forward:

    session = model.new_session(batch, capacity)
    logits = session.prefill(ids, lengths)   # right-padded prompts, one pass per component
    opens = session.feed(next_ids)           # embedder, encoder byte layers, router: [B] bool
    session.advance(opens, flags)            # rows whose byte opened a chunk: latent, EMA
    logits = session.decode()                # the byte reads its chunk: next-byte logits

Per new byte t: the byte layers step (windowed rings where windowed); the router compares
q_t with the cached k_{t-1} and opens a chunk where p_t >= 0.5 (and the chunk cap allows);
an opened chunk is the byte's own state, so the latent steps once on it, the dechunker folds
the latent's output into its EMA and the decoder's cross-attention switches to it. Unlike a
BLT patch, which closes at its last byte, a chunk opens at the byte that decides it, and that
byte already reads it (bltx/model/learned_blt.py, causality): routing and the latent step
come before the byte's decode.
"""

from __future__ import annotations

import torch

from bltx.model.cache import row_gather
from bltx.model.chunking import chunk_start_positions
from bltx.model.sessions.base import CachedSession, span_bucket
from bltx.patching.base import starts_to_patch_ids


class CachedLearnedBLT(CachedSession):
    """Every cache of one batch of rows; rows sit at their own byte positions."""

    PARTS = ("byte_embedder", "encoder", "chunker", "latent", "decoder")
    EXTRA = {"encoder": ("prefill_bytes", "to_chunk"), "chunker": ("prefill_dechunk", "merge", "upsample_step"),
             "decoder": ("set_patch",)}
    COMPILED = ("feed", "open_chunks", "decode")  # open_chunks: one graph per bound

    def __init__(self, model, batch: int, capacity: int, compiled: bool = False):
        super().__init__(model, batch, capacity, compiled)
        self.chunks: list[int] = []  # chunks per row so far (host ints), set by prefill

    @torch.no_grad()
    def prefill(self, ids: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """ids [B, T] right-padded prompts of `lengths` -> logits [B, 260] after each prompt.
        The model's forward, part by part (each part's prefill runs its own forward)."""
        m, c = self.model, self.caches
        h = m.byte_embedder.prefill(ids, lengths, c["byte_embedder"])
        h = m.encoder.prefill_bytes(h, lengths, c["encoder"])
        p, starts = m.chunker.prefill(h, lengths, m.max_patches, c["chunker"])
        P = int(starts.sum(dim=-1).max())  # eager forward: the chunk axis at the real count
        patch_ids = starts_to_patch_ids(starts)
        counts = c["chunker"]["chunks"]  # chunks inside each row's prompt
        zhat = m.latent.prefill(m.encoder.downsample(h, patch_ids, P), counts, c["latent"])
        z, u = m.chunker.prefill_dechunk(zhat, p, starts, patch_ids, chunk_start_positions(patch_ids, P),
                                         counts, c["chunker"])
        logits = m.decoder.prefill(h + u, z, patch_ids, lengths, c["decoder"])
        m.decoder.set_patch(row_gather(z, counts - 1), counts > 0, c["decoder"])
        self.chunks = counts.tolist()  # one sync; the host tracks counts from the flags
        return row_gather(logits, lengths - 1)[:, 0]

    @torch.no_grad()
    def feed(self, ids: torch.Tensor) -> torch.Tensor:
        """Byte ids [B] at each row's next position -> whether each opens a chunk, [B] bool."""
        m, c = self.model, self.caches
        h = m.byte_embedder.step(ids[:, None], c["byte_embedder"])
        self.h = m.encoder.step(h, c["encoder"])
        return m.chunker.step(self.h, c["chunker"])

    def advance(self, opens: torch.Tensor, flags: list[int]) -> None:
        """Rows with `flags` opened a chunk at the fed byte: the latent steps on it, reading the
        chunks so far (a power of two above the most), not its capacity."""
        if any(flags):
            self.chunks = [n + f for n, f in zip(self.chunks, flags)]
            self.open_chunks(opens, span_bucket(max(max(self.chunks), 16), self.capacity))

    @torch.no_grad()
    def open_chunks(self, opens: torch.Tensor, bound: int | None = None) -> None:
        """Rows `opens` start a chunk at the fed byte: the latent steps on it (reading `bound`
        > every row's chunk count), the EMA and the decoder follow."""
        m, c = self.model, self.caches
        zhat = self.step_latent(m.encoder.to_chunk(self.h), opens, bound)
        m.decoder.set_patch(m.chunker.merge(zhat, opens, c["chunker"]), opens, c["decoder"])

    @torch.no_grad()
    def decode(self) -> torch.Tensor:
        m, c = self.model, self.caches
        return m.decoder.step(self.h + m.chunker.upsample_step(c["chunker"]), c["decoder"])[:, 0]
