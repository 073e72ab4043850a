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


def param_groups(model: nn.Module, weight_decay: float, user_groups=(), lr: float | None = None) -> list[dict]:
    """Decay / no-decay groups, each split further by parameter layout (see `_layout_key`)
    and by the recipe's `optimizer.groups` (the first whose globs match a parameter's name
    sets its lr scale and weight decay). Frozen parameters are left out: no state, no decay.
    The split depends on the launch layout, so checkpoints store optimizer state per
    parameter name (flattened), never per group index: they load on any layout."""
    from bltx.model.init import canonical_name
    from bltx.train.finetune import check_globs, matches

    named = [(canonical_name(n), p) for n, p in model.named_parameters() if p.requires_grad]
    for i, g in enumerate(user_groups):
        check_globs([n for n, _ in named], g.match, f"optimizer.groups[{i}].match")
    groups: dict[tuple, dict] = {}
    for name, p in named:
        index = next((i for i, g in enumerate(user_groups) if matches(name, g.match)), None)
        user = None if index is None else user_groups[index]
        decay = p.ndim >= 2
        key = (index, decay, _layout_key(p))
        if key not in groups:
            wd = weight_decay if user is None or user.weight_decay is None else user.weight_decay
            groups[key] = {"params": [], "weight_decay": wd if decay else 0.0}
            if user is not None and lr is not None:
                groups[key]["lr"] = lr * user.lr_scale
        groups[key]["params"].append(p)
    return list(groups.values())


def fused_supported(device: torch.device) -> bool:
    # CUDA always; CPU fused AdamW exists in torch >= 2.4.
    return device.type in ("cuda", "cpu", "xpu", "mps")


@register("optimizer", "adamw")
def build_adamw(model: nn.Module, cfg: OptimizerConfig, device: torch.device) -> torch.optim.Optimizer:
    fused = cfg.fused and fused_supported(device)
    return torch.optim.AdamW(
        param_groups(model, cfg.weight_decay, cfg.groups, cfg.lr),
        lr=cfg.lr,
        betas=tuple(cfg.betas),
        eps=cfg.eps,
        fused=fused,
        foreach=None if fused else True,
    )


def build_optimizer(model: nn.Module, cfg: OptimizerConfig, device: torch.device) -> torch.optim.Optimizer:
    return get_registry("optimizer").get(cfg.type, where="optimizer.type")(model, cfg, device)
