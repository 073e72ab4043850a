"""Gradient-norm clipping that works for any mix of plain, FSDP and TP parameters.

With FSDP + TP on part of a model, gradients live on different meshes (blocks on the
(dp, tp) mesh, the rest on dp alone, or plain tensors without FSDP). Norms cannot be
combined across meshes in one foreach call, so each group (same mesh and placements)
gets its own norm, made a full (all-reduced) value, and the groups are combined.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Iterable

import torch
from torch.distributed.tensor import DTensor


def _group_key(t: torch.Tensor):
    if isinstance(t, DTensor):
        return (id(t.device_mesh), tuple(t.placements))
    return None


@torch.no_grad()
def clip_grad_norm_(parameters: Iterable[torch.Tensor], max_norm: float, norm_type: float = 2.0) -> torch.Tensor:
    """Clip in place like torch.nn.utils.clip_grad_norm_; returns the total norm as a
    plain tensor, identical on every rank."""
    params = [p for p in parameters if p.grad is not None]
    if not params:
        return torch.tensor(0.0)
    groups: dict = defaultdict(list)
    for p in params:
        groups[_group_key(p.grad)].append(p.grad)
    norms = []
    for grads in groups.values():
        norm = torch.nn.utils.get_total_norm(grads, norm_type, foreach=True)
        if isinstance(norm, DTensor):
            norm = norm.full_tensor()  # Partial -> reduced over the ranks that share it
        norms.append(norm.float())
    total = torch.linalg.vector_norm(torch.stack([n.to(norms[0].device) for n in norms]), norm_type)
    for grads_key, grads in groups.items():
        torch.nn.utils.clip_grads_with_norm_(
            [p for p in params if _group_key(p.grad) == grads_key], max_norm, total, foreach=True
        )
    return total
