"""Pool byte states into patch states with tensor ops only (static patch count P)."""

from __future__ import annotations

import torch


def pool_patches(h: torch.Tensor, patch_ids: torch.Tensor, num_patches: int, mode: str = "max") -> torch.Tensor:
    """h [B, T, d], patch_ids [B, T] -> [B, P, d]. Empty (padding) patches are zero.

    Bytes whose patch id is >= P go to a dump row that is cut off, so a too-small P drops
    bytes instead of corrupting the last patch (the model reports that case eagerly).
    """
    B, T, d = h.shape
    idx = torch.where(patch_ids < num_patches, patch_ids, num_patches)
    idx = idx.unsqueeze(-1).expand(B, T, d)
    base = torch.zeros(B, num_patches + 1, d, dtype=h.dtype, device=h.device)
    if mode == "max":
        # include_self=False: a patch's value is the max over its bytes only; empty rows keep 0.
        out = base.scatter_reduce(1, idx, h, reduce="amax", include_self=False)
    elif mode == "mean":
        total = base.scatter_add(1, idx, h)
        count = torch.zeros(B, num_patches + 1, 1, dtype=h.dtype, device=h.device)
        count = count.scatter_add(1, idx[..., :1], torch.ones_like(h[..., :1]))
        out = total / count.clamp(min=1)
    else:
        raise ValueError(f"unknown pooling '{mode}'")
    return out[:, :num_patches]
