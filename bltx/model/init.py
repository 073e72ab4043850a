"""Weight initialisation helpers shared by all components (torchtitan-style init_weights)."""

from __future__ import annotations

from torch import nn


def trunc_normal(tensor, std: float) -> None:
    # Truncate at 3 sigma, as the released BLT training code does.
    nn.init.trunc_normal_(tensor, mean=0.0, std=std, a=-3 * std, b=3 * std)


def init_linear(lin: nn.Linear, std: float | None = None) -> None:
    """Truncated normal with std = fan_in ** -0.5 unless given."""
    trunc_normal(lin.weight, std if std is not None else lin.in_features ** -0.5)
    if lin.bias is not None:
        nn.init.zeros_(lin.bias)


def init_embedding(emb: nn.Embedding, dim: int | None = None) -> None:
    trunc_normal(emb.weight, (dim or emb.embedding_dim) ** -0.5)


def init_children(module: nn.Module) -> None:
    """Call `init_weights()` on every direct child that has one."""
    for child in module.children():
        fn = getattr(child, "init_weights", None)
        if fn is not None:
            fn()
        else:
            init_children(child)
