"""The `eval` task: bits-per-byte of a checkpoint on a file (or the validation split), plus
mean patch length and FLOPs per byte.

    python -m bltx.run recipes/tiny.toml --set job.task=eval \
        --set eval.checkpoint=runs/tiny --set eval.path=some.txt --set eval.steps=0

The checkpoint is `eval.checkpoint`, else `checkpoint.load_path`, else the newest one in
`job.dump_dir`. `eval.path` (files or a glob) is evaluated whole; without it, the recipe's
validation split. `eval.steps` caps the number of batches (0: all windows). The model is
built from the recipe, so it must match the checkpoint's model (a clear error otherwise).
Results are printed and written to `<dump_dir>/eval.json`.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import torch

import bltx
from bltx.config import resolve_path
from bltx.data.loader import build_data, build_data_for_recipe, validation_batches
from bltx.errors import CheckpointError, DataError
from bltx.eval.bpb import evaluate_bpb
from bltx.registry import register
from bltx.sections import Recipe


def checkpoint_for(recipe: Recipe, explicit: str, task: str) -> Path:
    """The checkpoint a task reads: `explicit` (e.g. eval.checkpoint), else
    `checkpoint.load_path`, else the newest one in `job.dump_dir`."""
    from bltx.train.checkpoint import find_checkpoint

    for value in (explicit, recipe.checkpoint.load_path):
        if value:
            return find_checkpoint(resolve_path(recipe, value))
    try:
        return find_checkpoint(recipe.job.dump_dir)
    except CheckpointError:
        raise CheckpointError(
            f"{task} needs a checkpoint: none in {recipe.job.dump_dir}; train first or set "
            f"{task}.checkpoint=PATH"
        ) from None


def checkpoint_for_eval(recipe: Recipe) -> Path:
    return checkpoint_for(recipe, recipe.eval.checkpoint, "eval")


def load_trained_model(recipe: Recipe, ckpt: Path, device: torch.device) -> torch.nn.Module:
    """The recipe's model with the checkpoint's weights (shape-checked first)."""
    from bltx.train.checkpoint import check_compatible, load_model_state

    with torch.device(device):
        model = bltx.build_model(recipe)
    if ckpt.is_dir():
        check_compatible(ckpt, model.state_dict())
    state = load_model_state(ckpt)
    missing, unexpected = model.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise CheckpointError(
            f"checkpoint {ckpt} does not fit the model: missing {sorted(missing)[:3]}, "
            f"unexpected {sorted(unexpected)[:3]}"
        )
    bad = next((k for k, v in state.items() if v.is_floating_point() and not torch.isfinite(v).all()), None)
    if bad is not None:  # a diverged run: every output would be NaN
        raise CheckpointError(f"checkpoint {ckpt} holds non-finite weights (e.g. '{bad}'); use an earlier checkpoint")
    return model.eval()


def flops_per_byte(model: torch.nn.Module, recipe: Recipe, mean_patch_length: float) -> dict[str, float] | None:
    """Forward FLOPs per byte by component (bltx.eval.flops), or None for models it does
    not describe (anything but BLT)."""
    from bltx.eval.flops import flops_per_byte as count
    from bltx.model.blt import BLT

    if not isinstance(model, BLT):
        return None
    return count(model, mean_patch_length, recipe.data.seq_len)


def eval_batches(recipe: Recipe):
    cfg = recipe.data
    if recipe.eval.path:
        data_cfg = dataclasses.replace(cfg, paths=[recipe.eval.path], validation_fraction=0.0)
        base = Path(recipe.source).parent if recipe.source else None
        windows = build_data(data_cfg, base).train
    else:
        data = build_data_for_recipe(recipe)
        if data.validation is None:
            raise DataError("eval: data.validation_fraction is 0 and eval.path is empty; name a file to evaluate")
        windows = data.validation
    return validation_batches(windows, cfg.batch_size, recipe.eval.steps)


@register("task", "eval")
def evaluate(recipe: Recipe) -> int:
    """Print (and save) bpb, mean patch length and FLOPs/byte of a trained checkpoint."""
    from bltx.device import pick_device

    device = pick_device(recipe.job.device)
    ckpt = checkpoint_for_eval(recipe)
    batches = eval_batches(recipe)
    model = load_trained_model(recipe, ckpt, device)
    result = evaluate_bpb(model, batches, device, recipe.training.dtype)
    out = {
        "checkpoint": str(ckpt),
        "data": recipe.eval.path or "validation split",
        "bytes": result.bytes,
        **result.scalars(),
    }
    if result.patches:
        fpb = flops_per_byte(model, recipe, result.mean_patch_length)
        if fpb is not None:
            out["flops_per_byte"] = fpb["total"]
            out["flops_per_byte_by_component"] = fpb
    parts = [f"bpb {out['bpb']:.4f}", f"loss {out['loss']:.4f}"]
    if "mean_patch_length" in out:
        parts.append(f"mean patch length {out['mean_patch_length']:.2f}")
    if "flops_per_byte" in out:
        parts.append(f"FLOPs/byte {out['flops_per_byte']:.3g}")
    parts.append(f"{out['bytes']} bytes")
    print(f"eval {ckpt}: " + " | ".join(parts), flush=True)
    dump = Path(recipe.job.dump_dir)
    dump.mkdir(parents=True, exist_ok=True)
    (dump / "eval.json").write_text(json.dumps(out, indent=1) + "\n")
    return 0
