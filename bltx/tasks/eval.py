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


from bltx.data.loader import build_data, build_data_for_recipe, validation_batches
from bltx.errors import DataError
from bltx.eval.flops import flops_per_byte
from bltx.registry import register
from bltx.sections import Recipe
from bltx.train.loss import evaluate_bpb
from bltx.train.trained import checkpoint_for_eval, load_trained_model


def eval_batches(recipe: Recipe):
    cfg = recipe.data
    if recipe.eval.path:
        data_cfg = dataclasses.replace(cfg, paths=[recipe.eval.path], sources=[], validation_fraction=0.0)
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
    # Every model reports its FLOPs (bltx/protocols.py); one that does not patch has one
    # byte per position.
    fpb = flops_per_byte(model, result.mean_patch_length if result.patches else 1.0, recipe.data.seq_len)
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
