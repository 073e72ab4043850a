"""Incremental BLT generation with key/value caches and online patching.

Per new byte at position s (all rows of the batch advance together, prompts are fed byte by
byte, so byte-level caches share one position):
  1. the boundary tracker decides whether byte s+1 opens a patch (entropy model stepped with
     its own cache, or the patcher re-run on the prefix for rule-based patchers);
  2. the byte is embedded (n-gram hashes need only the last few bytes) and stepped through
     the local encoder's layers with their caches; the layer outputs that cross-attention
     reads are kept;
  3. rows whose patch closes at s (byte s+1 opens a new one) pool and cross-attend over that
     patch's bytes and step the latent transformer once: the latent runs once per patch;
  4. the local decoder steps the byte through its layers, cross-attending to the latent state
     of the newest complete patch, and returns the next-byte logits.
This is the same computation as `BLT.forward` on the whole prefix (lookahead decoder rule,
see model/blt.py), reorganised so each byte costs O(1) layer steps instead of a full pass.
"""

from __future__ import annotations

import torch

from bltx.bytes import PAD_ID
from bltx.infer.kv_cache import CachedStack
from bltx.model.entropy_model import entropy_from_logits
from bltx.model.latent import LatentTransformer
from bltx.model.local_decoder import LocalDecoder
from bltx.model.local_encoder import LocalEncoder
from bltx.model.pooling import pool_patches
from bltx.patching.entropy import EntropyPatcher


def cached_support(model) -> str | None:
    """None when `model` can generate with caches, else the reason it cannot."""
    from bltx.model.blt import BLT

    if not isinstance(model, BLT):
        return f"{type(model).__name__} is not a BLT (cached steps exist for BLT models only)"
    if not model.decoder_lookahead:
        return "the patcher peeks at the byte it patches (predicts_next_start = False)"
    for name, cls in (("encoder", LocalEncoder), ("latent", LatentTransformer), ("decoder", LocalDecoder)):
        if type(getattr(model, name, None)) is not cls:
            return f"model.{name} is not the built-in '{cls.__name__}' (no cached step for it)"
    return None


class EntropyBoundary:
    """Online entropy patching: steps the frozen entropy model with its own cache."""

    def __init__(self, patcher: EntropyPatcher, batch: int, capacity: int, like: torch.Tensor):
        self.patcher = patcher
        self.model = patcher.entropy_model
        self.stack = CachedStack(self.model.layers, self.model.cfg, batch, capacity, like, self.model.cfg.window)
        self.prev_entropy = torch.zeros(batch, device=like.device)

    def next_starts(self, s: int, ids: torch.Tensor) -> torch.Tensor:
        """Whether byte s+1 opens a patch (before the max-length split), [B] bool."""
        positions = torch.full((ids.shape[0],), s, device=ids.device)
        h = self.model.tok_embeddings(ids[:, s : s + 1])
        h, _ = self.stack.step(h, positions)
        entropy = entropy_from_logits(self.model.output(self.model.norm(h)))[:, 0]
        p = self.patcher
        starts = torch.zeros_like(entropy, dtype=torch.bool)
        if p.threshold is not None:
            starts |= entropy > p.threshold
        if p.relative_threshold is not None:
            # H(x_{s+1}) - H(x_s); at s = 0 the "previous" entropy is the zero padding, as in
            # `starts_from_entropies` (and position 1 always starts anyway).
            starts |= entropy - self.prev_entropy > p.relative_threshold
        self.prev_entropy = entropy
        return starts | (s + 1 < 2)


class PrefixBoundary:
    """Any strictly causal patcher: re-run it on the prefix plus one pad byte and read the
    last column. Rule-based patchers are cheap, so this costs little."""

    def __init__(self, model):
        self.model = model

    def next_starts(self, s: int, ids: torch.Tensor) -> torch.Tensor:
        prefix = ids[:, : s + 1]
        ext = torch.nn.functional.pad(prefix, (0, 1), value=PAD_ID)
        # The model's patcher without its max-length split (the tracker applies that).
        return self.model.patcher.compute_starts(ext)[:, -1].bool()


class CachedBLTGenerator:
    """Holds every cache for one batch and turns one byte per row into next-byte logits."""

    def __init__(self, model, batch: int, capacity: int):
        reason = cached_support(model)
        if reason is not None:
            raise ValueError(f"cached generation unavailable: {reason}")
        like = next(model.parameters())
        device = like.device
        self.model = model
        self.enc, self.lat, self.dec = model.encoder, model.latent, model.decoder
        self.backend = model.backend
        self.capacity = capacity
        B = batch
        self.ids = torch.full((B, capacity), PAD_ID, dtype=torch.long, device=device)
        self.enc_stack = CachedStack(self.enc.layers, self.enc.cfg, B, capacity, like, self.enc.cfg.window)
        self.dec_stack = CachedStack(self.dec.layers, self.dec.cfg, B, capacity, like, self.dec.cfg.window)
        self.lat_stack = CachedStack(self.lat.layers, self.lat.cfg, B, capacity, like, None)
        self.cross_layers = tuple(sorted(int(n) for n in self.enc.cross_attn))
        d = self.enc.cfg.dim
        self.enc_states = {l: torch.zeros(B, capacity, d, dtype=like.dtype, device=device) for l in self.cross_layers}
        self.latent_out = torch.zeros(B, capacity, self.lat.dim, dtype=like.dtype, device=device)
        self.n_closed = torch.zeros(B, dtype=torch.long, device=device)  # patches through the latent
        self.piece_start = torch.zeros(B, dtype=torch.long, device=device)  # start of the open patch
        patcher = model.patcher
        if isinstance(patcher, EntropyPatcher):
            self.boundary = EntropyBoundary(patcher, B, capacity, like)
        else:
            self.boundary = PrefixBoundary(model)
        self.max_patch_length = getattr(patcher, "max_patch_length", None)
        ngram_sizes = getattr(getattr(model.byte_embedder, "cfg", None), "ngram_sizes", None)
        # Bytes of left context the embedder needs (None: unknown embedder, use the prefix).
        self.embed_context = max([1, *ngram_sizes]) if ngram_sizes is not None else None
        self.starts = torch.zeros(B, capacity + 1, dtype=torch.bool, device=device)
        self.starts[:, 0] = True

    def _embed(self, s: int) -> torch.Tensor:
        lo = 0 if self.embed_context is None else max(0, s + 1 - self.embed_context)
        return self.model.byte_embedder(self.ids[:, lo : s + 1])[:, -1:]

    def _close_patches(self, s: int, closing: torch.Tensor) -> None:
        """Encode the patch [piece_start, s] of every row and step the latent once."""
        enc, k = self.enc, self.enc.cfg.cross_attn_k
        B = closing.shape[0]
        pos = torch.arange(s + 1, device=closing.device)
        in_patch = pos[None, :] >= self.piece_start[:, None]
        local_ids = torch.where(in_patch, 0, -1)
        pool_ids = torch.where(in_patch, 0, 1)  # 1 = the pooling helper's dump row
        q_group = torch.zeros(B, k, dtype=torch.long, device=closing.device)
        mask = self.backend.group_mask(q_group, local_ids)
        patches = None
        for l in self.cross_layers:
            h = self.enc_states[l][:, : s + 1]
            if patches is None or enc.cfg.cross_attn_repool:
                pooled = pool_patches(h, pool_ids, 1, enc.cfg.pooling)
                patches = enc.patch_proj(pooled).reshape(B, k, enc.cfg.dim)
            patches = patches + enc.cross_attn[str(l)](patches, h, mask, self.backend)
        x = patches.reshape(B, 1, k * enc.cfg.dim)
        if enc.out_proj is not None:
            x = enc.out_proj(x)
        x, _ = self.lat_stack.step(x, self.n_closed)
        if self.lat.norm is not None:
            x = self.lat.norm(x)
        rows = torch.arange(B, device=x.device)
        keep = self.latent_out[rows, self.n_closed]
        self.latent_out[rows, self.n_closed] = torch.where(closing[:, None], x[:, 0], keep)
        self.n_closed += closing.long()

    def _decode(self, s: int, h: torch.Tensor) -> torch.Tensor:
        dec, k = self.dec, self.dec.cfg.cross_attn_k
        B = h.shape[0]
        rows = torch.arange(B, device=h.device)
        dec_id = self.n_closed - 1  # the newest complete patch (lookahead rule)
        kv = dec.patch_proj(self.latent_out[rows, dec_id.clamp(min=0)]).reshape(B, k, dec.cfg.dim)
        q_group = torch.where(dec_id >= 0, 0, -1)[:, None]
        mask = self.backend.group_mask(q_group, torch.zeros(B, k, dtype=torch.long, device=h.device))
        prepared = self.dec_stack.prepare(torch.full((B,), s, device=h.device))
        for i in range(len(self.dec_stack.layers)):
            if str(i) in dec.cross_attn:
                h = h + dec.cross_attn[str(i)](h, kv, mask, self.backend)
            h = self.dec_stack.step_layer(i, h, prepared)
        return dec.output(dec.norm(h))[:, 0]

    @torch.no_grad()
    def step(self, s: int, byte_ids: torch.Tensor) -> torch.Tensor:
        """Feed byte s of every row ([B] ids); returns logits [B, 260] for byte s+1."""
        if s >= self.capacity:
            raise ValueError(f"generation capacity {self.capacity} bytes exceeded")
        self.ids[:, s] = byte_ids
        opens = self.boundary.next_starts(s, self.ids)
        if self.max_patch_length is not None:
            opens |= (s + 1 - self.piece_start) >= self.max_patch_length
        self.starts[:, s + 1] = opens
        B = byte_ids.shape[0]
        h, kept = self.enc_stack.step(self._embed(s), torch.full((B,), s, device=byte_ids.device), self.cross_layers)
        for l, state in kept.items():
            self.enc_states[l][:, s] = state[:, 0]
        if bool(opens.any()):
            self._close_patches(s, opens)
        self.piece_start = torch.where(opens, s + 1, self.piece_start)
        return self._decode(s, h)
