"""A chunker plugin written from bltx/protocols.py alone: a linear boundary scorer on the
change between consecutive byte states.

    [job]
    plugins = ["plugins.linear_chunker"]

    [model]
    type = "learned_blt"

    [model.chunker]
    type = "delta_linear"
    target_length = 6.0

The Chunker contract: `.target_length`; probabilities(h [B, T, d]) -> p [B, T] (byte t opens
a chunk where p_t >= 0.5; p_t may read h_t and earlier only, h is causal); dechunk(zhat, p,
starts, patch_ids, first) -> (z [B, P, latent_dim] read by the decoder's cross-attention,
u [B, T, d] added to each byte's residual stream); aux(p, starts) -> (aux losses, stats).

Here p_t = sigmoid(w . (h_t - h_{t-1}) + b), p_0 = 1; no smoothing across chunks (z = zhat);
each byte adds its chunk's up-projected state scaled by a straight-through confidence (1 in
the forward, d/dp in the backward), which is how the LM loss reaches the scorer; the aux
loss pulls the mean p toward 1 / target_length. No cache protocol: generation recomputes.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from bltx.registry import register


@register("chunker", "delta_linear")
class DeltaLinearChunker(nn.Module):
    @dataclass
    class Config:
        target_length: float = 4.0
        rate_loss_weight: float = 1.0

        def __post_init__(self):
            if self.target_length <= 1.0:
                raise ValueError(f"target_length must be > 1, got {self.target_length}")

    def __init__(self, cfg: Config, dim: int, latent_dim: int, **context):
        super().__init__()
        self.cfg = cfg
        self.target_length = cfg.target_length
        self.dim = dim
        self.score = nn.Linear(dim, 1)
        self.up = nn.Linear(latent_dim, dim, bias=False)

    def probabilities(self, h: torch.Tensor) -> torch.Tensor:
        delta = h[:, 1:] - h[:, :-1]
        p = torch.sigmoid(self.score(delta).squeeze(-1).float())
        return F.pad(p, (1, 0), value=1.0)  # the first byte always opens a chunk

    def dechunk(self, zhat: torch.Tensor, p: torch.Tensor, starts: torch.Tensor, patch_ids: torch.Tensor,
                first: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        per_chunk = self.up(zhat)  # [B, P, dim]
        index = patch_ids.clamp(max=per_chunk.shape[1] - 1)
        rows = per_chunk.gather(1, index.unsqueeze(-1).expand(*index.shape, per_chunk.shape[-1]))
        confidence = torch.where(starts, p, 1.0 - p)
        straight_through = confidence + (1.0 - confidence).detach()
        return zhat, rows * straight_through.unsqueeze(-1).to(rows.dtype)

    def aux(self, p: torch.Tensor, starts: torch.Tensor) -> tuple[dict, dict]:
        rate = p.mean()
        loss = (rate - 1.0 / self.cfg.target_length) ** 2
        return ({"rate_loss": self.cfg.rate_loss_weight * loss},
                {"boundary_rate": starts.float().mean().detach(), "boundary_prob": rate.detach()})

    def init_weights(self) -> None:
        nn.init.normal_(self.score.weight, std=self.dim ** -0.5)
        nn.init.zeros_(self.score.bias)
        nn.init.zeros_(self.up.weight)

    def forward_flops(self, seq_len: int, patch_len: float) -> float:
        """Per byte: the scorer (2 per weight); the up-projection once per chunk."""
        return 2.0 * self.dim + 2.0 * self.up.in_features * self.dim / patch_len
