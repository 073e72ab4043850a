"""Local encoder: a small byte transformer plus patch cross-attention (BLT section 3.2).

Patch queries start as a pooling (max by default) of the byte states of each patch,
projected to `cross_attn_k` queries per patch; each query attends only to the bytes of its
own patch. The k queries of a patch are concatenated and, when k * dim differs from the
latent width, projected to it, so the output is ready for the latent backbone.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
from torch import nn

from bltx.model import flop_math
from bltx.model.attention import SDPA, CrossAttention, SdpaMask, causal_mask
from bltx.model.cache import StackCache, capture_inputs, prefill_stack
from bltx.model.init import init_linear
from bltx.model.patch_attention import PatchQueries
from bltx.model.pooling import pool_patches
from bltx.model.transformer import LocalDims, make_layers, rope_for
from bltx.registry import register


def patch_query_groups(batch: int, num_patches: int, k: int, device) -> torch.Tensor:
    """Patch index of each of the P*k query/key slots: 0,0,1,1,... for k=2 -> [B, P*k]."""
    return torch.arange(num_patches, device=device).repeat_interleave(k).expand(batch, -1)


class ByteStackEncoder(nn.Module):
    """What every local encoder shares: its sizes, the byte transformer `layers` (built first,
    so parameter names and order stay those of the checkpoints) and that stack's cache.

    Context: `latent_dim` (width of the latent input), `backend` (attention backend).
    """

    def __init__(self, cfg: LocalDims, latent_dim: int, backend):
        super().__init__()
        self.cfg = cfg
        self.dim = cfg.dim
        self.latent_dim = latent_dim
        self.backend = backend
        self.layers = make_layers(cfg)

    def stack_cache(self, batch: int, capacity: int) -> StackCache:
        """The byte layers' keys/values: a ring of `window` (+ spare) slots when windowed."""
        like = self.layers["0"].attention.wq.weight
        return StackCache(len(self.layers), self.cfg, batch, capacity, self.cfg.window, like)


@register("encoder", "local")
class LocalEncoder(ByteStackEncoder):
    """Byte transformer + patch cross-attention. forward(h, patch_ids, P) -> (h, patches)."""

    @dataclass
    class Config(LocalDims):
        dim: int = 1024
        n_layers: int = 1
        n_heads: int = 16
        cross_attn_all_layers: bool = False
        # Re-pool the patch queries before every cross-attention, as HF transformers'
        # BltLocalEncoder does; with cross_attn_all_layers this leaves all but the last
        # cross-attention without effect (their weights get no gradient). Off: pool once
        # and refine the queries layer by layer (the paper's description).
        cross_attn_repool: bool = False
        pooling: Literal["max", "mean"] = "max"

    def __init__(self, cfg: Config, latent_dim: int, backend, **context):
        super().__init__(cfg, latent_dim, backend)
        k = cfg.cross_attn_k
        self.patch_proj = nn.Linear(cfg.dim, cfg.dim * k, bias=False)
        where = range(cfg.n_layers) if cfg.cross_attn_all_layers else [cfg.n_layers - 1]
        self.cross_attn = nn.ModuleDict(
            {str(i): CrossAttention(cfg.dim, cfg.n_heads, cfg.kv_heads, cfg.norm_eps) for i in where}
        )
        self.out_proj = nn.Linear(cfg.dim * k, latent_dim, bias=False) if cfg.dim * k != latent_dim else None

    def forward(self, h: torch.Tensor, patch_ids: torch.Tensor, num_patches: int,
                doc_ids: torch.Tensor | None = None):
        """`doc_ids` [B, T]: bytes attend only inside their document. The cross-attention
        needs nothing more: it is local to a patch, and no patch spans two documents (the
        BLT assembly starts a patch at each document's first byte)."""
        B, T, d = h.shape
        k = self.cfg.cross_attn_k
        rope = rope_for(self.cfg, T, h.device)
        self_mask = causal_mask(self.backend, T, self.cfg.window, h.device, doc_ids)
        if self.cfg.cross_attn_layout == "patch":
            cross_mask = PatchQueries.build(patch_ids, num_patches, k)
        else:
            cross_mask = self.backend.group_mask(patch_query_groups(B, num_patches, k, h.device), patch_ids)
        patches = None
        for name, layer in self.layers.items():
            h = layer(h, self_mask, rope, self.backend)
            if name in self.cross_attn:
                if patches is None or self.cfg.cross_attn_repool:
                    pooled = pool_patches(h, patch_ids, num_patches, self.cfg.pooling)
                    patches = self.patch_proj(pooled).reshape(B, num_patches * k, d)
                patches = patches + self.cross_attn[name](patches, h, cross_mask, self.backend)
        out = patches.reshape(B, num_patches, k * d)
        if self.out_proj is not None:
            out = self.out_proj(out)
        return h, out

    def init_weights(self) -> None:
        for layer in self.layers.values():
            layer.init_weights()
        for ca in self.cross_attn.values():
            ca.init_weights()
        init_linear(self.patch_proj)
        if self.out_proj is not None:
            init_linear(self.out_proj)

    # -- cached generation (bltx/model/cache.py) ----------------------------------------------
    # The cache holds the byte stack's keys/values and, for each cross-attention layer, the
    # byte states it reads, so a closing patch is encoded from its own bytes only.

    def init_cache(self, batch: int, capacity: int) -> dict:
        like = self.patch_proj.weight
        states = {name: torch.zeros(batch, capacity, self.cfg.dim, dtype=like.dtype, device=like.device)
                  for name in self.cross_attn}
        return {"stack": self.stack_cache(batch, capacity), "states": states}

    def prefill(self, h, patch_ids, num_patches: int, lengths: torch.Tensor, cache: dict):
        crossed = {name: self.layers[name] for name in self.cross_attn}
        with capture_inputs(crossed, outputs=True) as seen:
            out = prefill_stack(self.layers, cache["stack"], lengths, lambda: self(h, patch_ids, num_patches))
        for name, state in seen.items():
            cache["states"][name][:, : state.shape[1]] = state
        return out

    def step(self, h: torch.Tensor, cache: dict) -> torch.Tensor:
        """T bytes per row, h [B, T, dim] -> their byte states [B, T, dim]."""
        stack = cache["stack"]
        T = h.shape[1]
        info = stack.prepare(count=T)
        rows = torch.arange(h.shape[0], device=h.device)[:, None]
        cols = stack.pos[:, None] + torch.arange(T, device=h.device)[None]
        for i, (name, layer) in enumerate(self.layers.items()):
            h = layer.step(h, stack.layers[i], info)
            if name in self.cross_attn:
                cache["states"][name][rows, cols] = h
        stack.advance(count=T)
        return h

    def close(self, cache: dict, start: torch.Tensor, span: int) -> torch.Tensor:
        """Encode the patch [start[b], pos[b]) of each row -> [B, 1, latent_dim]. `span` >= the
        longest of these patches: the cross-attention reads `span` byte states, not the prefix."""
        pos = cache["stack"].pos
        B, d, k = pos.shape[0], self.cfg.dim, self.cfg.cross_attn_k
        idx = start[:, None] + torch.arange(span, device=pos.device)[None]
        inside = idx < pos[:, None]
        capacity = next(iter(cache["states"].values())).shape[1]
        gather = idx.clamp(max=capacity - 1)[..., None].expand(B, span, d)
        mask = SdpaMask(inside[:, None, None, :])  # the k queries see the patch's bytes
        patches = None
        for name in self.cross_attn:
            hs = torch.gather(cache["states"][name], 1, gather)
            if patches is None or self.cfg.cross_attn_repool:
                pooled = pool_patches(hs, torch.where(inside, 0, 1), 1, self.cfg.pooling)
                patches = self.patch_proj(pooled).reshape(B, k, d)
            patches = patches + self.cross_attn[name](patches, hs, mask, SDPA)
        out = patches.reshape(B, 1, k * d)
        return self.out_proj(out) if self.out_proj is not None else out

    def forward_flops(self, seq_len: int, patch_len: float) -> float:
        """Forward FLOPs per byte: byte layers, plus each patch's cross-attention (its k
        queries read the patch's own bytes) spread over the patch's bytes."""
        cfg, k = self.cfg, self.cfg.cross_attn_k
        n_cross = len(self.cross_attn)
        q_side, kv_side = flop_math.cross_projections(cfg)
        per_patch = n_cross * k * (q_side + flop_math.attention(cfg, patch_len))
        per_patch += 2.0 * cfg.dim * cfg.dim * k  # pooled state -> k queries
        if self.out_proj is not None:
            per_patch += 2.0 * cfg.dim * k * self.latent_dim
        per_byte = flop_math.stack(cfg, flop_math.context(cfg.window, seq_len)) + n_cross * kv_side
        return per_byte + per_patch / patch_len
