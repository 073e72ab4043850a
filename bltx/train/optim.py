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


def param_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    decay, no_decay = [], []
    for _, p in model.named_parameters():
        if not p.requires_grad:
            continue
        (decay if p.ndim >= 2 else no_decay).append(p)
    groups = [{"params": decay, "weight_decay": weight_decay}]
    if no_decay:
        groups.append({"params": no_decay, "weight_decay": 0.0})
    return groups


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
    return get_registry("optimizer").get(cfg.name, where="optimizer.name")(model, cfg, device)
