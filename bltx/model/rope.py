"""Rotary position embeddings in the interleaved layout used by the released BLT weights.

Pairs are (x[0], x[1]), (x[2], x[3]), ... (not Llama's first-half/second-half split), so
weights converted from BLT checkpoints keep their meaning. cos/sin are recomputed from
constants in every forward: no buffers, so a meta-device build needs no re-init for them.
"""

from __future__ import annotations

import torch


def rope_cos_sin(
    length: int, head_dim: int, theta: float, device: torch.device | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """cos, sin of shape [length, head_dim] (each frequency repeated for its pair), fp32."""
    inv_freq = 1.0 / (theta ** (torch.arange(0, head_dim, 2, dtype=torch.float, device=device) / head_dim))
    pos = torch.arange(length, device=device).float()
    freqs = pos[:, None] * inv_freq[None, :]
    emb = torch.repeat_interleave(freqs, 2, dim=-1)
    return emb.cos(), emb.sin()


def _rotate_pairs(x: torch.Tensor) -> torch.Tensor:
    # (a, b) -> (-b, a) within each interleaved pair.
    a = x[..., 0::2]
    b = x[..., 1::2]
    return torch.stack((-b, a), dim=-1).flatten(-2)


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """x [B, H, T, D]; cos/sin [T, D]."""
    cos = cos.to(x.dtype)
    sin = sin.to(x.dtype)
    return x * cos + _rotate_pairs(x) * sin
