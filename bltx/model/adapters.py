"""Adapters: small trainable modules added to the Linear layers of a built model, the rest
frozen (the `adapter` component kind; built-in: `lora`).

    [adapter]
    type = "lora"
    rank = 8
    alpha = 16.0
    target = ["latent.*", "decoder.*"]     # globs over Linear module names

`attach_adapters(model, table)` puts one adapter under each targeted Linear as its child
`adapter` (so its parameters are `...wq.adapter.a`, beside `...wq.weight`, and every
existing parameter name stays what checkpoints and the HF mapping know) and adds its
output to the Linear's through a forward hook. A hook, not a wrapper module: the Linear
keeps its class and name, so the parallel plans, FSDP units and compile see the model they
expect (compile traces the hook into the block's graph). `merge_adapters(model)` folds
each adapter into its Linear's weight and removes it (export to Hugging Face, bltx.load).

An adapter component: `Adapter(cfg, in_features=, out_features=)`, a module with
`forward(x) -> delta of the Linear's output`, `delta_weight() -> [out, in]` (what merging
adds to the weight) and `init_weights()`.
"""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass, field

import torch
from torch import nn

from bltx.checks import at_least, positive, require
from bltx.errors import ConfigError
from bltx.model.init import canonical_name, trunc_normal
from bltx.registry import build, register

# The child name of an adapter under its Linear; its parameters are `<linear>.adapter.*`.
CHILD = "adapter"
_HOOK = "_bltx_adapter_hook"


@register("adapter", "lora")
class LoRA(nn.Module):
    """Low-rank update (Hu et al., arXiv 2106.09685): W x + (alpha / rank) B A dropout(x),
    A [rank, in] random, B [out, rank] zero, so a fresh adapter leaves the model unchanged."""

    @dataclass
    class Config:
        rank: int = 8
        alpha: float = 16.0
        dropout: float = 0.0
        # Globs over the names of the Linear layers that get an adapter (the entropy model
        # inside a patcher is never targeted: it runs outside autograd).
        target: list[str] = field(default_factory=lambda: ["encoder.*", "latent.*", "decoder.*"])

        def __post_init__(self):
            at_least("adapter.rank", self.rank, 1)
            positive("adapter.alpha", self.alpha)
            require(0.0 <= self.dropout < 1.0, "adapter.dropout", self.dropout, "must be in [0, 1)")
            require(bool(self.target), "adapter.target", self.target, "must name Linear layers, e.g. [\"latent.*\"]")

    def __init__(self, cfg: Config, in_features: int, out_features: int):
        super().__init__()
        self.cfg = cfg
        self.scale = cfg.alpha / cfg.rank
        self.a = nn.Parameter(torch.empty(cfg.rank, in_features))
        self.b = nn.Parameter(torch.empty(out_features, cfg.rank))
        self.dropout = nn.Dropout(cfg.dropout) if cfg.dropout > 0 else nn.Identity()

    def init_weights(self) -> None:
        trunc_normal(self.a, self.a.shape[1] ** -0.5)
        nn.init.zeros_(self.b)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a, b = self.a.to(x.dtype), self.b.to(x.dtype)
        return (self.dropout(x) @ a.t() @ b.t()) * self.scale

    def delta_weight(self) -> torch.Tensor:
        return (self.b @ self.a) * self.scale


def _add_adapter_output(module: nn.Module, args, output):
    return output + getattr(module, CHILD)(args[0])


def attach_adapters(model: nn.Module, table: dict | None) -> list[str]:
    """Add the adapter `table` names to every targeted Linear of `model`; the names of the
    adapted Linears. ConfigError when a glob targets no Linear."""
    if not table:
        return []
    cfg = build_config(table)
    adapted = []
    for name, module in list(model.named_modules()):
        name = canonical_name(name)
        if not isinstance(module, nn.Linear) or name.startswith("patcher."):
            continue
        if any(fnmatch.fnmatchcase(name, g) for g in cfg.target):
            adapter = build("adapter", table, where="adapter",
                            in_features=module.in_features, out_features=module.out_features)
            module.add_module(CHILD, adapter)
            setattr(module, _HOOK, module.register_forward_hook(_add_adapter_output))
            adapted.append(name)
    if not adapted:
        raise ConfigError(f"adapter.target {list(cfg.target)} matches no Linear layer; Linear names look like "
                          f"'latent.layers.0.attention.wq'")
    return adapted


def build_config(table: dict):
    from bltx.registry import validate

    return validate("adapter", table, "adapter")


def adapter_modules(model: nn.Module) -> list[nn.Module]:
    return [m for m in model.modules() if isinstance(m, nn.Linear) and hasattr(m, _HOOK)]


def is_adapter_param(name: str) -> bool:
    return f".{CHILD}." in f".{canonical_name(name)}"


def init_adapters(model: nn.Module) -> None:
    """Initialise every adapter (inside bltx.model.init.seeded_init for layout-free values)."""
    for linear in adapter_modules(model):
        getattr(linear, CHILD).init_weights()


@torch.no_grad()
def merge_adapters(model: nn.Module) -> int:
    """Fold each adapter into its Linear's weight and remove it; how many were merged."""
    linears = adapter_modules(model)
    for linear in linears:
        adapter = getattr(linear, CHILD)
        linear.weight.add_(adapter.delta_weight().to(linear.weight.dtype))
        getattr(linear, _HOOK).remove()
        delattr(linear, _HOOK)
        del linear._modules[CHILD]
    return len(linears)
