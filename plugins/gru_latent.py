"""Worked example of a latent plugin with cached generation: a GRU over patches.

    [job]
    plugins = ["plugins.gru_latent"]

    [model.latent]
    type = "gru"
    dim = 256

The latent contract is `.dim` and x [B, P, dim] -> [B, P, dim], causal over P. Implementing
the cache protocol of bltx/model/cache.py as well (init_cache / prefill / step) is what
lets `bltx.infer.generate` step this latent once per closed patch instead of recomputing the
whole model for every byte; without it generation still works, by full recomputation.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from bltx.registry import register


@register("latent", "gru")
class GruLatent(nn.Module):
    """One GRU layer with a residual connection: y = x + GRU(x)."""

    @dataclass
    class Config:
        dim: int = 256

    def __init__(self, cfg: Config, **context):
        super().__init__()
        self.cfg = cfg
        self.dim = cfg.dim
        self.gru = nn.GRU(cfg.dim, cfg.dim, batch_first=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.gru(x)[0]

    def init_weights(self) -> None:
        self.gru.reset_parameters()

    def forward_flops(self, seq_len: int, patch_len: float) -> float:
        """Per patch: three gates, each an input and a hidden matmul."""
        return 2.0 * 6 * self.dim * self.dim

    # -- cache protocol: the hidden state [B, dim] is the whole cache ---------------------------

    def init_cache(self, batch: int, capacity: int) -> torch.Tensor:
        w = self.gru.weight_hh_l0
        return torch.zeros(batch, self.dim, dtype=w.dtype, device=w.device)

    def prefill(self, x: torch.Tensor, counts: torch.Tensor, cache: torch.Tensor) -> torch.Tensor:
        """x [B, P, dim]; the cached state is the one after each row's first counts[b] patches."""
        out = self.gru(x)[0]
        rows = torch.arange(x.shape[0], device=x.device)
        state = out[rows, (counts - 1).clamp(min=0)]
        cache.copy_(torch.where((counts > 0)[:, None], state, torch.zeros_like(state)))
        return x + out

    def step(self, x: torch.Tensor, cache: torch.Tensor, active: torch.Tensor, bound: int | None = None) -> torch.Tensor:
        """x [B, 1, dim] -> [B, 1, dim]; only `active` rows keep their new state (`bound`, the
        patches an attention step may read, does not apply to a recurrent state)."""
        out, h = self.gru(x, cache[None].contiguous())
        cache.copy_(torch.where(active[:, None], h[0], cache))
        return x + out
