"""The model of a finished run: which checkpoint a task reads and the recipe's model with its
weights. Shared by the eval, generate and research tasks and by tools."""

from __future__ import annotations

from pathlib import Path

import torch

import bltx
from bltx.config import resolve_path
from bltx.errors import CheckpointError
from bltx.sections import Recipe
from bltx.checkpoint import check_compatible, find_checkpoint, load_model_state, read_meta
from bltx.train.pretrained import is_model_folder, load_model


def checkpoint_for(recipe: Recipe, explicit: str, task: str) -> Path:
    """The checkpoint a task reads: `explicit` (e.g. eval.checkpoint), else
    `checkpoint.load_path`, else the newest one in `job.dump_dir`. Each may name a run folder,
    a trainer checkpoint, a converted folder (model.toml + model.pt) or a HF BLT folder."""
    for value, key in ((explicit, f"{task}.checkpoint"), (recipe.checkpoint.load_path, "checkpoint.load_path")):
        if value:
            path = resolve_path(recipe, value, key)
            # A converted or HF folder carries its model: load_trained_model reads it whole.
            return path if is_model_folder(path) else find_checkpoint(path)
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
    """The recipe's model with the checkpoint's weights (shape-checked first); a converted
    or HF folder's own model (its model.toml / config.json) with its weights. A run's
    adapters are merged into the weights."""
    if is_model_folder(ckpt):
        return load_model(ckpt, device, base=recipe)[0]
    if recipe.adapter:
        return load_model(ckpt, device, merge=True)[0]
    with torch.device(device):
        model = bltx.build_model(recipe)
    if ckpt.is_dir():
        check_compatible(ckpt, model.state_dict())
        if read_meta(ckpt).get("finite", True) is not True:  # weights or Adam moments went NaN/inf
            raise CheckpointError(f"checkpoint {ckpt} holds non-finite weights or optimizer state "
                                  f"(meta.json \"finite\": false); use an earlier checkpoint")
    state = load_model_state(ckpt)  # refuses NaN/inf weights (bltx/checkpoint/weights.py require_finite)
    missing, unexpected = model.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise CheckpointError(
            f"checkpoint {ckpt} does not fit the model: missing {sorted(missing)[:3]}, "
            f"unexpected {sorted(unexpected)[:3]}"
        )
    return model.eval()
