"""Cached BLT generation: one session holds every component's cache and feeds bytes through
the components' cache protocol (bltx/model/cache.py). This file only orchestrates: which
component runs when, and the patch bookkeeping of the BLT assembly (bltx/model/blt.py).

    session = CachedBLT(model, batch, capacity)
    logits = session.prefill(ids, lengths)      # right-padded prompts, one parallel pass
    opens = session.feed(next_ids)              # patcher, embedder, encoder: one byte per row
    session.close(opens, span)                  # rows whose patch just closed: encode it, latent
    logits = session.decode()                   # decoder: next-byte logits [B, 260]

Per byte, `feed` decides whether the next byte opens a patch (lookahead rule: the last byte
of a patch reads that patch's latent state), so a closing patch is encoded and pushed through
the latent before `decode`. `close` is skipped when no row closes a patch; `span` (the longest
closing patch, known to the caller) bounds what its cross-attention reads.
"""

from __future__ import annotations

import functools
import inspect

import torch

from bltx.model.cache import row_gather
from bltx.protocols import CACHED_EXTRA, missing_cached


def cached_support(model) -> str | None:
    """None when `model` can generate with caches, else the reason (naming the component)."""
    from bltx.model.blt import BLT

    if not isinstance(model, BLT):
        return f"{type(model).__name__} is not a BLT (cached steps exist for BLT models only)"
    if not model.decoder_lookahead:
        return "the patcher peeks at the byte it patches (predicts_next_start = False)"
    return CachedBLT.unsupported(model)


_COMPILED: dict = {}


def compiled_step(fn, device: torch.device):
    """`fn` under torch.compile, built once per function and device type (dynamo's graph
    cache is per code object, so later sessions reuse the graphs). CUDA: CUDA graphs
    ("reduce-overhead"); elsewhere inductor's fused kernels. Static shapes: a new shape is a
    new graph, never a dynamic one."""
    key = (fn, device.type)
    if key not in _COMPILED:
        mode = "reduce-overhead" if device.type == "cuda" else None
        _COMPILED[key] = torch.compile(fn, mode=mode, dynamic=False)
    return _COMPILED[key]


class CachedSession:
    """What every cached session shares: the caches of its stepped `PARTS`, whether the
    latent's step takes a `bound`, and its per-byte `COMPILED` methods under torch.compile."""

    PARTS: tuple[str, ...] = ()
    EXTRA: dict[str, tuple[str, ...]] = {}  # methods a part needs beyond the CachedStep contract
    COMPILED: tuple[str, ...] = ()

    @classmethod
    def unsupported(cls, model) -> str | None:
        """None when every stepped part of `model` has the cache protocol, else which lacks what."""
        for name in cls.PARTS:
            part = model.get_submodule(name)
            lacking = missing_cached(part, extra=cls.EXTRA.get(name, ()))
            if lacking:
                return f"model.{name} ({type(part).__name__}) has no cache protocol (missing {', '.join(lacking)})"
        return None

    def __init__(self, model, batch: int, capacity: int, compiled: bool, reason: str | None):
        if reason is not None:
            raise ValueError(f"cached generation unavailable: {reason}")
        self.model = model
        self.capacity = capacity
        self.device = next(model.parameters()).device
        self.caches = {name: getattr(model, name).init_cache(batch, capacity) for name in self.PARTS}
        self.h = None  # the fed byte's encoder state, read by decode
        # Latents whose step takes `bound` attend over the patches so far, not the capacity.
        self.bounded_latent = "bound" in inspect.signature(model.latent.step).parameters
        if compiled:
            # The per-byte steps have fixed shapes and update caches in place, so one graph
            # each serves every byte; a step taking a span or bound makes one per power of two.
            for name in self.COMPILED:
                # The function under its no_grad decorator: the decorator's wrapper is one code
                # object for all of them, and dynamo's per-code graph limit would then be shared.
                fn = compiled_step(getattr(type(self), name).__wrapped__, self.device)
                setattr(self, name, torch.no_grad()(functools.partial(fn, self)))

    def step_latent(self, x: torch.Tensor, opens: torch.Tensor, bound: int | None) -> torch.Tensor:
        """The latent's step on new patch/chunk states `x` for rows `opens`, reading `bound` >
        every row's count where the latent takes it."""
        extra = {"bound": bound} if self.bounded_latent and bound is not None else {}
        return self.model.latent.step(x, self.caches["latent"], opens, **extra)


class CachedBLT(CachedSession):
    """Every cache of one batch of rows; rows sit at their own byte positions."""

    PARTS = ("byte_embedder", "encoder", "latent", "decoder")
    EXTRA = CACHED_EXTRA
    COMPILED = ("feed", "decode", "_encode_patch", "_advance_latent")

    def __init__(self, model, batch: int, capacity: int, compiled: bool = False):
        super().__init__(model, batch, capacity, compiled, cached_support(model))
        self.patching = model.patcher.init_state(batch, capacity, self.device)
        self.closing_start = None  # start of the patch each row's fed byte belongs to
        self.closed = None  # complete patches per row after prefill (read once by host_state)

    @torch.no_grad()
    def prefill(self, ids: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """ids [B, T] right-padded prompts of `lengths` -> logits [B, 260] after each prompt."""
        m, c = self.model, self.caches
        T = ids.shape[1]
        starts = m.patcher.prefill_state(ids, lengths, self.patching)  # [B, T+1]
        P = int(starts[:, :T].sum(dim=-1).max())
        patch_ids = starts[:, :T].long().cumsum(-1) - 1
        dec_patch_ids = starts.long().cumsum(-1)[:, 1:] - 2  # lookahead rule (model/blt.py)
        cols = torch.arange(1, T + 1, device=ids.device)[None]
        closed = (starts[:, 1:] & (cols <= lengths[:, None])).sum(-1)  # complete patches per row
        h = m.byte_embedder.prefill(ids, lengths, c["byte_embedder"])
        h, patches = m.encoder.prefill(h, patch_ids, P, lengths, c["encoder"])
        latent = m.latent.prefill(patches, closed, c["latent"])
        logits = m.decoder.prefill(h, latent, dec_patch_ids, lengths, c["decoder"])
        self.closed = closed
        newest = (closed - 1).clamp(min=0)
        m.decoder.set_patch(row_gather(latent, newest), closed > 0, c["decoder"])
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
        current one) -> next-byte logits after each [B, T, 260], in one pass per component."""
        m, c = self.model, self.caches
        h = m.byte_embedder.step(ids, c["byte_embedder"])
        h = m.encoder.step(h, c["encoder"])
        return m.decoder.step(h, c["decoder"])

    @torch.no_grad()
    def close(self, opens: torch.Tensor, span: int, bound: int | None = None) -> None:
        """Rows with `opens` closed a patch at the fed byte: encode it (reading `span` byte
        states), step the latent (reading `bound` > every row's patch count, when the latent
        takes it), and let the decoder read the new latent state."""
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

    def open_lengths(self) -> list[int]:
        """Bytes in each row's open patch (host ints; one sync, after prefill)."""
        return (self.patching.pos - self.patching.last_start).tolist()

    def host_state(self) -> tuple[list[int], list[int]]:
        """After prefill, in one sync: bytes in each row's open patch, complete patches per row
        (the host then tracks both from the per-byte patch flags)."""
        runs, counts = torch.stack([self.patching.pos - self.patching.last_start, self.closed]).tolist()
        return runs, counts
