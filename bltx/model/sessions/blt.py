"""Cached BLT generation (bltx/model/blt.py): one session holds every component's cache and
feeds bytes through the components' cache protocol (bltx/model/cache.py), with the patch
bookkeeping of the BLT assembly.

    session = model.new_session(batch, capacity)
    logits = session.prefill(ids, lengths)      # right-padded prompts, one parallel pass
    opens = session.feed(next_ids)              # patcher, embedder, encoder: one byte per row
    session.advance(opens, flags)               # rows whose patch just closed: encode it, latent
    logits = session.decode()                   # decoder: next-byte logits [B, 260]

Per byte, `feed` decides whether the next byte opens a patch (lookahead rule: the last byte
of a patch reads that patch's latent state), so a closing patch is encoded and pushed through
the latent before `decode`. The host tracks each row's open-patch length and patch count from
the per-byte flags, so closing needs no extra sync: `close` is skipped when no row closes a
patch, and `span` (the longest closing patch) bounds what its cross-attention reads.
"""

from __future__ import annotations

import torch

from bltx.model.cache import row_gather
from bltx.model.sessions.base import CachedSession, span_bucket
from bltx.patching.base import patch_index
from bltx.protocols import CACHED_EXTRA


class CachedBLT(CachedSession):
    """Every cache of one batch of rows; rows sit at their own byte positions."""

    PARTS = ("byte_embedder", "encoder", "latent", "decoder")
    EXTRA = CACHED_EXTRA
    COMPILED = ("feed", "decode", "_encode_patch", "_advance_latent")

    @classmethod
    def unsupported(cls, model) -> str | None:
        if not model.decoder_lookahead:
            return "the patcher peeks at the byte it patches (predicts_next_start = False)"
        return super().unsupported(model)

    def __init__(self, model, batch: int, capacity: int, compiled: bool = False):
        super().__init__(model, batch, capacity, compiled)
        self.patching = model.patcher.init_state(batch, capacity, self.device)
        self.closing_start = None  # start of the patch each row's fed byte belongs to
        # Host bookkeeping per row, set by prefill: bytes in the open patch, complete patches.
        self.run: list[int] = []
        self.patches: list[int] = []

    @torch.no_grad()
    def prefill(self, ids: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """ids [B, T] right-padded prompts of `lengths` -> logits [B, 260] after each prompt."""
        m, c = self.model, self.caches
        T = ids.shape[1]
        starts = m.patcher.prefill_state(ids, lengths, self.patching)  # [B, T+1]
        P = int(starts[:, :T].sum(dim=-1).max())
        patch_ids, dec_patch_ids = patch_index(starts, lookahead=True)  # the forward's helper
        cols = torch.arange(1, T + 1, device=ids.device)[None]
        closed = (starts[:, 1:] & (cols <= lengths[:, None])).sum(-1)  # complete patches per row
        h = m.byte_embedder.prefill(ids, lengths, c["byte_embedder"])
        h, patches = m.encoder.prefill(h, patch_ids, P, lengths, c["encoder"])
        latent = m.latent.prefill(patches, closed, c["latent"])
        logits = m.decoder.prefill(h, latent, dec_patch_ids, lengths, c["decoder"])
        newest = (closed - 1).clamp(min=0)
        m.decoder.set_patch(row_gather(latent, newest), closed > 0, c["decoder"])
        # One sync: the host tracks both from the per-byte flags from here on.
        self.run, self.patches = torch.stack([self.patching.pos - self.patching.last_start, closed]).tolist()
        return row_gather(logits, lengths - 1)[:, 0]

    @torch.no_grad()
    def feed(self, ids: torch.Tensor) -> torch.Tensor:
        """Byte ids [B] at each row's next position; returns whether the byte after opens a
        patch ([B] bool, on the device)."""
        m, c = self.model, self.caches
        self.closing_start = self.patching.last_start.clone()
        opens = m.patcher.step_state(ids, self.patching)
        h = m.byte_embedder.step(ids[:, None], c["byte_embedder"])
        self.h = m.encoder.step(h, c["encoder"])
        return opens

    @torch.no_grad()
    def feed_model(self, ids: torch.Tensor, closing_start: torch.Tensor) -> None:
        """`feed` for a byte the patcher has already stepped (speculative decoding drafts
        with the patcher first); closing_start: the row's patch start before that step."""
        m, c = self.model, self.caches
        self.closing_start = closing_start
        h = m.byte_embedder.step(ids[:, None], c["byte_embedder"])
        self.h = m.encoder.step(h, c["encoder"])

    @torch.no_grad()
    def extend(self, ids: torch.Tensor) -> torch.Tensor:
        """ids [B, T], bytes the patcher has stepped, none closing a patch (so all read the
        current one) -> next-byte logits after each [B, T, 260], in one pass per component.
        The caller adds the bytes it keeps to `run`."""
        m, c = self.model, self.caches
        h = m.byte_embedder.step(ids, c["byte_embedder"])
        h = m.encoder.step(h, c["encoder"])
        return m.decoder.step(h, c["decoder"])

    def advance(self, opens: torch.Tensor, flags: list[int]) -> None:
        """After `feed`: every row's open patch grew by the fed byte; rows with `flags` closed
        theirs, which is encoded and pushed through the latent."""
        self.run = [n + 1 for n in self.run]
        closing = [row for row in range(self.batch) if flags[row]]
        if not closing:
            return
        for row in closing:
            self.patches[row] += 1
        # The latent reads the patches so far (a power of two above the most, so a compiled
        # close sees few shapes), not its whole capacity.
        bound = span_bucket(max(max(self.patches) + 1, 16), self.capacity)
        self.close(opens, span_bucket(max(self.run[row] for row in closing), self.capacity), bound)
        for row in closing:
            self.run[row] = 0

    @torch.no_grad()
    def close(self, opens: torch.Tensor, span: int, bound: int | None = None) -> None:
        """Rows with `opens` closed a patch at the fed byte: encode it (reading `span` byte
        states), step the latent (reading `bound` > every row's patch count), and let the
        decoder read the new latent state."""
        # Two parts, so a compiled close makes one graph per span and one per bound, not one
        # per pair (dynamo keeps a few graphs per function).
        self._advance_latent(opens, self._encode_patch(span), bound)

    @torch.no_grad()
    def _encode_patch(self, span: int) -> torch.Tensor:
        return self.model.encoder.close(self.caches["encoder"], self.closing_start, span)

    @torch.no_grad()
    def _advance_latent(self, opens: torch.Tensor, patch: torch.Tensor, bound: int | None) -> None:
        self.model.decoder.set_patch(self.step_latent(patch, opens, bound), opens, self.caches["decoder"])

    @torch.no_grad()
    def decode(self) -> torch.Tensor:
        return self.model.decoder.step(self.h, self.caches["decoder"])[:, 0]
