"""FLOPs per byte for every model the research kit compares (one entry point).

`bltx.eval.flops` counts BLTs whose components are transformers. This extends it to
  - models with their own `flops_per_byte(seq_len, training, mean_patch_length)` method
    (the byte-level and BPE baselines, bltx/model/baselines.py);
  - BLTs whose latent is not a bltx transformer but offers `flops_per_token(context)`
    (the recurrent latent, the torchtitan plugin): the BLT is counted with a stand-in
    one-layer transformer latent of the same width, whose latent term is then replaced.
"""

from __future__ import annotations

import dataclasses

import torch

from bltx.errors import ConfigError


def model_flops_per_byte(model: torch.nn.Module, mean_patch_length: float, seq_len: int,
                         training: bool = False) -> float:
    """Total FLOPs per byte (forward, or forward + backward with `training`)."""
    from bltx.eval import flops
    from bltx.model.blt import BLT
    from bltx.model.transformer import TransformerDims

    own = getattr(model, "flops_per_byte", None)
    if callable(own):
        return float(own(seq_len, training=training, mean_patch_length=mean_patch_length))
    if not isinstance(model, BLT):
        raise ConfigError(f"no FLOP accounting for model {type(model).__name__}: give it a flops_per_byte method")
    if isinstance(getattr(model.latent, "cfg", None), TransformerDims):
        return flops.flops_per_byte(model, mean_patch_length, seq_len, training)["total"]
    per_token = getattr(model.latent, "flops_per_token", None)
    if per_token is None:
        raise ConfigError(f"latent {type(model.latent).__name__} has no flops_per_token method")
    stand_in = {"type": "transformer", "dim": model.latent.dim, "n_layers": 1, "n_heads": 1}
    counted = flops.flops_per_byte(dataclasses.replace(model.cfg, latent=stand_in), mean_patch_length, seq_len, training)
    L = float(mean_patch_length)
    latent = per_token(max(seq_len / L, 1.0)) / L * (3.0 if training else 1.0)
    return counted["total"] - counted["latent"] + latent


@torch.no_grad()
def measure_mean_patch_length(model: torch.nn.Module, batches) -> float:
    """Bytes per patch of `model.patch` over `batches` (1.0 for models that do not patch)."""
    patch = getattr(model, "patch", None)
    if patch is None:
        return 1.0
    n_bytes, n_patches = 0, 0
    for batch in batches:
        ids = batch["ids"]
        ent = batch.get("entropies")
        starts = patch(ids) if ent is None else patch(ids, entropies=ent)
        n_bytes += ids.numel()
        n_patches += int(starts[:, : ids.shape[1]].sum())
    return n_bytes / max(1, n_patches)


# ---- tasks: `python -m bltx.run RECIPE --set job.task=cute|noised_eval` ----------------------

def _load_for_eval(recipe):
    from bltx.eval.task import checkpoint_for_eval, load_trained_model
    from bltx.device import pick_device

    device = pick_device(recipe.job.device)
    ckpt = checkpoint_for_eval(recipe)
    return load_trained_model(recipe, ckpt, device), ckpt


def _write(recipe, name: str, out: dict) -> None:
    import json
    from pathlib import Path

    dump = Path(recipe.job.dump_dir)
    dump.mkdir(parents=True, exist_ok=True)
    (dump / name).write_text(json.dumps(out, indent=1) + "\n")


def cute_task(recipe) -> int:
    """CUTE exact-match accuracy of a checkpoint. eval.path: the folder of CUTE TSVs
    (default ../shared/data/cute); eval.steps: examples per task (0 -> 50); 4 shots."""
    from bltx.eval.cute import run_cute

    model, ckpt = _load_for_eval(recipe)
    data = recipe.eval.path or "../shared/data/cute"
    scores = run_cute(model, data, n=recipe.eval.steps or 50, shots=4)
    for task, s in scores.items():
        print(f"cute {task:14s} accuracy {s['accuracy']:.3f} ({s['n']} examples)", flush=True)
    mean = sum(s["accuracy"] for s in scores.values()) / len(scores)
    print(f"cute mean accuracy {mean:.3f} | {ckpt}")
    _write(recipe, "cute.json", {"checkpoint": str(ckpt), "mean_accuracy": mean, "tasks": scores})
    return 0


def noised_eval_task(recipe) -> int:
    """bpb under each character-level noise (bltx/eval/noise.py) of a checkpoint, on
    eval.path (default: the recipe's validation split); eval.steps caps the windows."""
    from pathlib import Path

    from bltx.config import resolve_path
    from bltx.data.loader import build_data_for_recipe
    from bltx.eval.noise import NOISES, noised_bpb

    model, ckpt = _load_for_eval(recipe)
    if recipe.eval.path:
        data = Path(resolve_path(recipe, recipe.eval.path)).read_bytes()
    else:
        view = build_data_for_recipe(recipe).validation
        if view is None:
            raise ConfigError("noised_eval: set eval.path or data.validation_fraction > 0")
        ids = view.view.read(0, len(view.view))
        data = (ids[ids >= 4] - 4).astype("uint8").tobytes()
    res = noised_bpb(model, data, NOISES, recipe.data.seq_len, recipe.data.batch_size,
                     max_windows=recipe.eval.steps * recipe.data.batch_size if recipe.eval.steps else 0,
                     dtype=recipe.training.dtype)
    for kind, s in res.items():
        print(f"noised_eval {kind:12s} bpb {s['bpb']:.4f}", flush=True)
    _write(recipe, "noised_eval.json", {"checkpoint": str(ckpt), "results": res})
    return 0


def _register_tasks() -> None:
    from bltx.registry import register

    register("task", "cute")(cute_task)
    register("task", "noised_eval")(noised_eval_task)


_register_tasks()
