"""`--dry-run`: build the recipe's model on the meta device and print what it would run.

Parameters per component, FLOPs per byte (forward and training), the parallel plan and the
memory per rank for the recipe's layout. No memory is allocated for weights, so the 8B
recipe plans on a laptop.
"""

from __future__ import annotations

import os

import torch

from bltx.parallel.mesh import minimum_world_size
from bltx.model.assembly import parameter_count
from bltx.sections import Recipe

# Mean patch length assumed for FLOPs when the patcher does not fix it (entropy patching):
# the paper's BLT runs average about 4.5 bytes per patch. Measure yours with the eval task.
ASSUMED_ENTROPY_PATCH_LENGTH = 4.5


def _counts(module: torch.nn.Module) -> tuple[int, int]:
    """(total, trainable) parameter counts; works on meta tensors."""
    return parameter_count(module), parameter_count(module, trainable_only=True)


def build_meta_model(recipe: Recipe) -> torch.nn.Module:
    """The model as training runs it: adapters attached, frozen parameters frozen (so the
    trainable counts and training FLOPs are the run's)."""
    from bltx.train.finetune import build_for_training

    with torch.device("meta"):
        return build_for_training(recipe)


def parameter_rows(recipe: Recipe, model: torch.nn.Module | None = None) -> list[tuple[str, int, int]]:
    """(part, parameters, trainable parameters) per top-level part of the model, then the total."""
    model = model if model is not None else build_meta_model(recipe)
    rows = [(name, *_counts(child)) for name, child in model.named_children()]
    rows.append(("total", *_counts(model)))
    return rows


def nominal_patch_length(recipe: Recipe) -> tuple[float, str]:
    patcher = recipe.model.get("patcher", {}) if isinstance(recipe.model, dict) else {}
    kind = patcher.get("type") if isinstance(patcher, dict) else patcher
    if kind == "byte":
        return 1.0, "byte patching"
    if kind == "static":
        stride = float(patcher.get("stride", 4))
        return stride, "static stride"
    return ASSUMED_ENTROPY_PATCH_LENGTH, "assumed; measure it with the eval task"


def flops_lines(recipe: Recipe, model: torch.nn.Module) -> list[str]:
    from bltx.errors import BltxError
    from bltx.eval.flops import flops_per_byte

    L, why = nominal_patch_length(recipe)
    try:
        fwd = flops_per_byte(model, L, recipe.data.seq_len)
        train = flops_per_byte(model, L, recipe.data.seq_len, training=True)
    except BltxError as exc:
        return [f"FLOPs per byte: not available ({exc})"]
    lines = [f"FLOPs per byte at mean patch length {L:g} ({why}), seq_len {recipe.data.seq_len}:"]
    lines.append(f"  {'component':<22}{'forward':>14}{'training':>14}")
    for key in fwd:
        lines.append(f"  {key:<22}{fwd[key]:>14.4g}{train.get(key, float('nan')):>14.4g}")
    return lines


def print_dry_run(recipe: Recipe, world_size: int = 0) -> None:
    from bltx.parallel.memory import dry_run_lines

    model = build_meta_model(recipe)
    print(f"recipe: {recipe.source or '(in code)'}  task: {recipe.job.task}")
    print(f"{'component':<24}{'params':>16}{'trainable':>16}")
    for name, total, trainable in parameter_rows(recipe, model):
        print(f"{name:<24}{total:>16,}{trainable:>16,}")
    print(
        f"data: seq_len={recipe.data.seq_len} batch_size={recipe.data.batch_size} "
        f"steps={recipe.training.steps} dtype={recipe.training.dtype}"
    )
    for line in flops_lines(recipe, model):
        print(line)
    world_size = world_size or int(os.environ.get("WORLD_SIZE", "0")) or minimum_world_size(recipe)
    for line in dry_run_lines(model, recipe, world_size):
        print(line)
