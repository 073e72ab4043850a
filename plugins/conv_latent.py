"""A latent plugin written from bltx/protocols.py alone: gated causal convolutions over patches.

    [job]
    plugins = ["plugins.conv_latent"]

    [model.latent]
    type = "causal_conv"
    dim = 128
    n_layers = 2
    kernel = 4

The Latent contract: `.dim`; x [B, P, dim] -> [B, P, dim], causal over P; `init_weights()`;
`forward_flops(seq_len, patch_len)` per patch. Causality is what a convolution gets wrong most
easily: the sequence is padded on the left only, so patch p reads patches p-kernel+1 .. p.
(`reads_ahead = true` pads on the right instead: a deliberately broken variant that
bltx.testing.check_part catches.) No cache protocol: generation recomputes.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from bltx.registry import register


@register("latent", "causal_conv")
class CausalConvLatent(nn.Module):
    """n_layers of x + W_out(silu(gate) * depthwise_conv(W_in x)), pre-norm."""

    @dataclass
    class Config:
        dim: int = 128
        n_layers: int = 2
        kernel: int = 4
        reads_ahead: bool = False

        def __post_init__(self):
            if self.kernel < 1 or self.n_layers < 1:
                raise ValueError(f"kernel and n_layers must be >= 1, got {self.kernel}, {self.n_layers}")

    def __init__(self, cfg: Config, **context):
        super().__init__()
        self.cfg = cfg
        self.dim = cfg.dim
        self.norms = nn.ModuleList(nn.RMSNorm(cfg.dim) for _ in range(cfg.n_layers))
        self.w_in = nn.ModuleList(nn.Linear(cfg.dim, 2 * cfg.dim, bias=False) for _ in range(cfg.n_layers))
        self.convs = nn.ModuleList(nn.Conv1d(cfg.dim, cfg.dim, cfg.kernel, groups=cfg.dim, bias=False)
                                   for _ in range(cfg.n_layers))
        self.w_out = nn.ModuleList(nn.Linear(cfg.dim, cfg.dim, bias=False) for _ in range(cfg.n_layers))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pad = (0, self.cfg.kernel - 1) if self.cfg.reads_ahead else (self.cfg.kernel - 1, 0)
        for norm, w_in, conv, w_out in zip(self.norms, self.w_in, self.convs, self.w_out):
            value, gate = w_in(norm(x)).chunk(2, dim=-1)
            mixed = conv(F.pad(value.transpose(1, 2), pad)).transpose(1, 2)
            x = x + w_out(F.silu(gate) * mixed)
        return x

    def init_weights(self) -> None:
        for norm in self.norms:
            nn.init.ones_(norm.weight)
        for layer in (*self.w_in, *self.convs, *self.w_out):
            nn.init.normal_(layer.weight, std=self.dim ** -0.5)

    def forward_flops(self, seq_len: int, patch_len: float) -> float:
        """Per patch: the in and out projections (2 per weight) and the depthwise kernel."""
        d, k = self.dim, self.cfg.kernel
        return self.cfg.n_layers * (2.0 * (2 * d * d + d * d) + 2.0 * d * k)
