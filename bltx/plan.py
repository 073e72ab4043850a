"""`--dry-run`: build the recipe's model on the meta device and print what it would run.

No memory is allocated for weights, so the 8B recipe plans on a laptop.
"""

from __future__ import annotations

import torch

from bltx.sections import Recipe


def count_params(module: torch.nn.Module) -> tuple[int, int]:
    """(total, trainable) parameter counts; works on meta tensors."""
    total = trainable = 0
    for p in module.parameters():
        total += p.numel()
        if p.requires_grad:
            trainable += p.numel()
    return total, trainable


def plan_table(recipe: Recipe) -> list[tuple[str, int, int]]:
    import bltx

    with torch.device("meta"):
        model = bltx.build_model(recipe)
    rows = [(name, *count_params(child)) for name, child in model.named_children()]
    rows.append(("total", *count_params(model)))
    return rows


def print_plan(recipe: Recipe) -> None:
    rows = plan_table(recipe)
    print(f"recipe: {recipe.source or '(in code)'}  task: {recipe.job.task}")
    print(f"{'component':<24}{'params':>16}{'trainable':>16}")
    for name, total, trainable in rows:
        print(f"{name:<24}{total:>16,}{trainable:>16,}")
    print(
        f"data: seq_len={recipe.data.seq_len} batch_size={recipe.data.batch_size} "
        f"steps={recipe.training.steps} dtype={recipe.training.dtype}"
    )
