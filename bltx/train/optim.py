"""Optimizers, registered by name under the "optimizer" kind: `fn(model, cfg, device)`.

AdamW decays only matrices (weights of linear layers and embeddings); norms' scales and
biases are left alone, as usual for transformers. The fused kernel is used where the device
has one (CUDA, and CPU in recent torch); otherwise the foreach kernel.
"""

from __future__ import annotations

import torch
from torch import nn

from bltx.registry import get_registry, register
from bltx.sections import OptimizerConfig


def _layout_key(p: torch.Tensor) -> tuple:
    """Parameters that one fused/foreach kernel call can update together: plain tensors,
    or DTensors on the same mesh with the same placements. A kernel given a mix fails
    (`got mixed torch.Tensor and DTensor`), which is what TP without FSDP produces: the
    latent blocks are DTensors, the local models plain tensors."""
    from torch.distributed.tensor import DTensor

    if isinstance(p, DTensor):
        mesh = p.device_mesh
        return ("dtensor", tuple(mesh.mesh_dim_names or ()), tuple(mesh.mesh.flatten().tolist()),
                tuple(str(pl) for pl in p.placements))
    return ("plain",)


def param_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    """Decay / no-decay groups, each split further by parameter layout (see `_layout_key`).
    The split depends on the launch layout, so checkpoints store optimizer state per
    parameter name (flattened), never per group index: they load on any layout."""
    groups: dict[tuple, dict] = {}
    for _, p in model.named_parameters():
        if not p.requires_grad:
            continue
        decay = p.ndim >= 2
        key = (decay, _layout_key(p))
        if key not in groups:
            groups[key] = {"params": [], "weight_decay": weight_decay if decay else 0.0}
        groups[key]["params"].append(p)
    return list(groups.values())


def fused_supported(device: torch.device) -> bool:
    # CUDA always; CPU fused AdamW exists in torch >= 2.4.
    return device.type in ("cuda", "cpu", "xpu", "mps")


@register("optimizer", "adamw")
def build_adamw(model: nn.Module, cfg: OptimizerConfig, device: torch.device) -> torch.optim.Optimizer:
    fused = cfg.fused and fused_supported(device)
    return torch.optim.AdamW(
        param_groups(model, cfg.weight_decay),
        lr=cfg.lr,
        betas=tuple(cfg.betas),
        eps=cfg.eps,
        fused=fused,
        foreach=None if fused else True,
    )


def build_optimizer(model: nn.Module, cfg: OptimizerConfig, device: torch.device) -> torch.optim.Optimizer:
    return get_registry("optimizer").get(cfg.type, where="optimizer.type")(model, cfg, device)
