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

from bltx.model.attention import CrossAttention
from bltx.model.init import init_linear
from bltx.model.patch_attention import PatchQueries
from bltx.model.pooling import pool_patches
from bltx.model.transformer import LocalDims, make_layers, rope_for
from bltx.registry import register


def patch_query_groups(batch: int, num_patches: int, k: int, device) -> torch.Tensor:
    """Patch index of each of the P*k query/key slots: 0,0,1,1,... for k=2 -> [B, P*k]."""
    return torch.arange(num_patches, device=device).repeat_interleave(k).expand(batch, -1)


@register("encoder", "local")
class LocalEncoder(nn.Module):
    """Byte transformer + patch cross-attention. forward(h, patch_ids, P) -> (h, patches).

    Context: `latent_dim` (width of the latent input), `backend` (attention backend).
    """

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
        super().__init__()
        self.cfg = cfg
        self.dim = cfg.dim
        self.latent_dim = latent_dim
        self.backend = backend
        self.layers = make_layers(cfg)
        k = cfg.cross_attn_k
        self.patch_proj = nn.Linear(cfg.dim, cfg.dim * k, bias=False)
        where = range(cfg.n_layers) if cfg.cross_attn_all_layers else [cfg.n_layers - 1]
        self.cross_attn = nn.ModuleDict(
            {str(i): CrossAttention(cfg.dim, cfg.n_heads, cfg.kv_heads, cfg.norm_eps) for i in where}
        )
        self.out_proj = nn.Linear(cfg.dim * k, latent_dim, bias=False) if cfg.dim * k != latent_dim else None

    def forward(self, h: torch.Tensor, patch_ids: torch.Tensor, num_patches: int):
        B, T, d = h.shape
        k = self.cfg.cross_attn_k
        rope = rope_for(self.cfg, T, h.device)
        self_mask = self.backend.causal_mask(T, self.cfg.window, h.device)
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
