"""Float8 training with torchao: swap chosen nn.Linear layers for Float8Linear.

Which linears stay in high precision (the module filter):
  - anything under a `float8_skip` prefix of the model's plan: the output head (its
    logits feed the loss directly and it is sensitive to quantisation), frozen models
    such as the entropy patcher; embeddings and hash tables are not linears at all;
  - linears whose in/out features are not multiples of 16 (the float8 GEMM kernels
    require it);
  - tiny linears (in or out features below `min_dim`), where casting costs more than the
    float8 matmul saves.
Recipes: "tensorwise" (one dynamic scale per tensor; float8 all-gathers under TP) or
"rowwise" (a scale per row; more accurate, slower).
"""

from __future__ import annotations

from typing import Callable, Iterable

from torch import nn


def float8_filter(skip: Iterable[str] = (), min_dim: int = 16) -> Callable[[nn.Module, str], bool]:
    """Module filter for torchao: True means "convert this linear to float8"."""
    prefixes = tuple(skip)

    def keep_fp8(module: nn.Module, fqn: str) -> bool:
        if not isinstance(module, nn.Linear):
            return False
        if any(fqn == p or fqn.startswith(p + ".") for p in prefixes):
            return False
        dims = (module.in_features, module.out_features)
        if any(d % 16 for d in dims):
            return False
        return min(dims) >= min_dim

    return keep_fp8


def apply_float8(model: nn.Module, recipe: str, skip: Iterable[str] = (), min_dim: int = 16) -> list[str]:
    """Convert the filtered linears of `model` in place; returns the converted fqns.

    Frozen linears are skipped too: float8 is a training speed-up and a frozen layer
    (no weight gradient) runs better as a plain matmul or under inference quantisation.
    """
    from torchao.float8 import Float8LinearConfig, convert_to_float8_training

    frozen = {
        name for name, mod in model.named_modules()
        if isinstance(mod, nn.Linear) and not any(p.requires_grad for p in mod.parameters())
    }
    base = float8_filter(skip, min_dim)
    converted: list[str] = []

    def keep(module: nn.Module, fqn: str) -> bool:
        ok = fqn not in frozen and base(module, fqn)
        if ok:
            converted.append(fqn)
        return ok

    config = Float8LinearConfig.from_recipe_name(recipe)
    convert_to_float8_training(model, config=config, module_filter_fn=keep)
    return converted
