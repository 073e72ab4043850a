"""Cached generation of a byteified model (bltx/interop/byteify/model.py), with boundaries
decided online the way the model factors them: after each byte, the boundary head says
whether the byte ends its patch; if so the patch is encoded and pushed through the latent
at once, and the next byte comes from the "after a patch" head reading that new state;
otherwise from the decoder's own head. Nothing looks ahead, so the bytes and boundaries a
session emits are exactly those the forward gives when fed them back (`ends`: the
realised boundaries per row, for that check). With predictor boundaries each head's
logits are restricted to the next bytes consistent with the boundary just emitted (model
doc, "the byte distribution"), so the predictor, reading the byte drawn, agrees with it:
recomputing the generated text from its bytes alone gives the same boundaries.

    session = model.new_session(batch, capacity)
    logits = session.prefill(ids, lengths)   # the prompt's boundaries from `model.boundaries`,
                                             # its last one from the boundary head
    session.feed(next_ids); logits = session.decode()   # one byte per row, as every session
"""

from __future__ import annotations

import torch

from bltx.bytes import OFFSET, PAD_ID
from bltx.interop.byteify.source import TINY
from bltx.model.cache import row_gather
from bltx.model.output import keep_only
from bltx.model.sessions.base import CachedSession, span_bucket
from bltx.protocols import CACHED_EXTRA


class ByteifiedSession(CachedSession):
    PARTS = ("byte_embedder", "encoder", "latent", "decoder")
    EXTRA = CACHED_EXTRA

    def __init__(self, model, batch: int, capacity: int, compiled: bool = False):
        super().__init__(model, batch, capacity, compiled=False)  # host work per byte: eager steps
        self.history: list[list[int]] = [[] for _ in range(batch)]
        self.ends: list[list[int]] = [[] for _ in range(batch)]  # positions that ended a patch
        self.patches = [0] * batch  # complete patches per row
        self.open_len = [0] * batch  # bytes in each row's open patch
        self.patch_start = torch.zeros(batch, dtype=torch.long, device=self.device)
        # Each row's trie node of its open patch (-1: not a token prefix), and with the
        # spelling prior (Config.spelling_prior) the token distribution of the latent state it reads.
        self.node = [-1] * batch
        self.q_read = None

    @torch.no_grad()
    def prefill(self, ids: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        m, c = self.model, self.caches
        B, T = ids.shape
        rows = torch.arange(B, device=ids.device)
        last = lengths - 1
        ends = m.boundaries(ids).ends.clone()
        cols = torch.arange(T, device=ids.device)[None]
        ends &= cols < last[:, None]  # the last prompt byte's boundary is the head's to decide
        starts = torch.nn.functional.pad(ends[:, :-1], (1, 0), value=True)
        patch_ids = starts.long().cumsum(-1) - 1
        P = int(patch_ids.max()) + 1
        closed = patch_ids[rows, last]  # complete patches before each row's last byte's patch
        tokens = m.vocab.describe(ids, starts, P)
        h = m.byte_embedder.prefill(ids, lengths, c["byte_embedder"])
        h, patches = m.encoder.prefill(h, patch_ids, P, lengths, c["encoder"])
        if m.cfg.subword_embedding:
            patches = patches + m.source_embedding(tokens.subword_token).to(patches.dtype)
        z = m.latent.prefill(patches, closed, c["latent"])
        d = m.decoder.prefill_hidden(h, z, patch_ids - 1, lengths, c["decoder"])
        m.decoder.set_patch(row_gather(z, (closed - 1).clamp(min=0)), closed > 0, c["decoder"])
        self.node = tokens.node[rows, last].tolist()
        if m.cfg.spelling_prior:
            self.q_read = m.source_head.token_probs(row_gather(z, (closed - 1).clamp(min=0))[:, 0])
        first_col = torch.where(starts & (cols <= last[:, None]), cols, 0).amax(-1)
        self.patch_start.copy_(first_col)
        host_ids, host_len = ids.tolist(), lengths.tolist()
        self.history = [row[:n] for row, n in zip(host_ids, host_len)]
        self.ends = [[t for t in range(n - 1) if row[t]] for row, n in zip(ends.tolist(), host_len)]
        self.patches = closed.tolist()
        self.open_len = (lengths - first_col).tolist()
        return self._resolve(row_gather(d, last)[:, 0])

    @torch.no_grad()
    def feed(self, ids: torch.Tensor) -> torch.Tensor:
        m, c = self.model, self.caches
        h = m.byte_embedder.step(ids[:, None], c["byte_embedder"])
        self.h = m.encoder.step(h, c["encoder"])
        children = m.vocab._children
        for row, v in enumerate(ids.tolist()):
            self.history[row].append(v)
            self.open_len[row] += 1
            n = self.node[row]
            self.node[row] = children[n].get(v - OFFSET, -1) if n >= 0 and v >= OFFSET else -1
        # Boundaries are decided in `decode`, before the next byte: none for the loop to act on.
        return torch.zeros_like(ids, dtype=torch.bool)

    def advance(self, opens: torch.Tensor, flags: list[int]) -> None:
        """Nothing: this model's boundary work happens in `decode`."""

    @torch.no_grad()
    def decode(self) -> torch.Tensor:
        return self._resolve(self.model.decoder.step_hidden(self.h, self.caches["decoder"])[:, 0])

    def _resolve(self, d: torch.Tensor) -> torch.Tensor:
        """d [B, dim]: the decoder's state at each row's newest byte -> its boundary, then
        the next-byte logits [B, 260] (closing the patch of rows whose byte ended one)."""
        m, c = self.model, self.caches
        boundary = m.heads.boundary(d)[:, 0].float()
        logits = m.decoder.output(d).float()
        node = torch.tensor(self.node, device=d.device)
        closes = None
        if m.cfg.boundaries == "predictor":
            # As the forward scores them: the boundary first (certain where no next byte
            # keeps the patch open), then the next byte among those consistent with it, so
            # the predictor, reading that byte, gives the boundary the session emitted.
            closes = m.closing_bytes(self._candidates(d.device), node)
        if m.cfg.spelling_prior:
            node = node[:, None]
            where = (node >= 0) & (torch.tensor(self.patches, device=d.device)[:, None] > 0)
            b_prior, inside = m.spelling_prior(self.q_read[:, None], torch.zeros_like(node), node, where,
                                               None if closes is None else closes[:, None])
            boundary, logits = boundary + b_prior[:, 0], logits + inside[:, 0]
        ends = boundary > 0
        if closes is not None:
            ends = ends | closes.all(-1)
            logits = keep_only(logits, ~closes)
        flags = ends.tolist()
        if not any(flags):
            return logits
        closing = [row for row, f in enumerate(flags) if f]
        span = span_bucket(max(self.open_len[row] for row in closing), self.capacity)
        patch = m.encoder.close(c["encoder"], self.patch_start, span)
        if m.cfg.subword_embedding:
            ending = torch.tensor([m.vocab.subword_token(hist, n) if f else -1 for hist, n, f in zip(self.history, self.node, flags)],
                                  device=d.device)
            patch = patch + m.source_embedding(ending)[:, None].to(patch.dtype)
        for row in closing:
            self.patches[row] += 1
            self.ends[row].append(len(self.history[row]) - 1)
            self.open_len[row] = 0
            self.node[row] = 0  # the next byte opens a patch: its prefix starts at the root
        bound = span_bucket(max(max(self.patches) + 1, 16), self.capacity)
        z = self.step_latent(patch, ends, bound)  # [B, 1, D]
        m.decoder.set_patch(z, ends, c["decoder"])
        first = m.heads.first_out(d + m.heads.first_proj(z[:, 0])).float()
        if m.cfg.first_byte_prior or m.cfg.spelling_prior:
            q_new = m.source_head.token_probs(z[:, 0])
            if m.cfg.first_byte_prior:
                first = first + m.source_head.first_byte_probs(q_new).clamp_min(TINY).log()
            if m.cfg.spelling_prior:
                self.q_read = torch.where(ends[:, None], q_new, self.q_read)
        if closes is not None:
            first = keep_only(first, closes)
        self.patch_start.copy_(torch.where(ends, c["encoder"]["stack"].pos, self.patch_start))
        return torch.where(ends[:, None], first, logits)

    def _candidates(self, device) -> torch.Tensor:
        """The predictor's logits [B, 260] for every next byte after each row's newest one,
        from the last bytes it reads (PAD before the text, as the forward pads its window)."""
        n = self.model.predictor.history + 1
        tails = [[PAD_ID] * max(0, n - len(h)) + h[-n:] for h in self.history]
        return self.model.predictor.candidates(torch.tensor(tails, device=device))[:, -1]

    def realised_starts(self, row: int) -> torch.Tensor:
        """bool [len + 1]: patch starts of row's bytes so far, the last column whether its
        newest byte ended a patch (the `starts` the forward takes to recompute them)."""
        n = len(self.history[row])
        out = torch.zeros(n + 1, dtype=torch.bool)
        out[0] = True
        for t in self.ends[row]:
            out[t + 1] = True
        return out
