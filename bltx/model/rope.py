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
    return _rope_table(length, head_dim, float(theta), torch.device(device or "cpu"))


# An opaque op to the compiler, on purpose: traced as plain pointwise ops, inductor fused
# cos/sin of the table into every kernel that reads it, recomputing two transcendentals per
# element of q and k (B x heads times the table) instead of once per (position, frequency):
# 15% of a compiled training step at seq 4096 on a 2-core CPU (tools/bench_train.py). As a
# custom op the table is computed once per forward and read like any other tensor.
@torch.library.custom_op("bltx::rope_table", mutates_args=())
def _rope_table(length: int, head_dim: int, theta: float, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    inv_freq = 1.0 / (theta ** (torch.arange(0, head_dim, 2, dtype=torch.float, device=device) / head_dim))
    pos = torch.arange(length, device=device).float()
    freqs = pos[:, None] * inv_freq[None, :]
    emb = torch.repeat_interleave(freqs, 2, dim=-1)
    return emb.cos(), emb.sin()


@_rope_table.register_fake
def _(length, head_dim, theta, device):
    return (torch.empty(length, head_dim, dtype=torch.float, device=device),
            torch.empty(length, head_dim, dtype=torch.float, device=device))


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
