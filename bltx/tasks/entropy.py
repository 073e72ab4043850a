"""Entropy-workflow tasks besides training: `calibrate` and `precompute_entropies`.

The workflow (each step `python -m bltx.run RECIPE [--set ...]`):
  1. recipes/entropy_tiny.toml                       train the entropy model (entropy_lm)
  2. recipes/entropy_tiny.toml --set job.task=calibrate
        exports the entropy model's weights (a .pt the patcher loads) and writes a recipe
        fragment with an entropy patcher whose threshold gives `calibrate.target_patch_length`
        bytes per patch on the validation split (tools/calibrate_threshold.py wraps this)
  3. recipes/tiny.toml                               train a BLT patching with that fragment
     (recipes/tiny_precomputed.toml: the same with entropies computed once by
      `--set job.task=precompute_entropies` and stored beside the data)
"""

from __future__ import annotations

import time
from pathlib import Path

import torch

import bltx
from bltx.config import dumps_toml, resolve_path
from bltx.data.entropies import compute_entropies, producer_of, save_entropies
from bltx.data.loader import build_data_for_recipe, open_stream, validation_batches
from bltx.errors import ConfigError, DataError
from bltx.protocols import has
from bltx.registry import build, register
from bltx.sections import Recipe


def _entropy_lm_with_weights(recipe: Recipe, device: torch.device):
    """The recipe's entropy_lm model loaded from its checkpoint, and the checkpoint path."""
    from bltx.checkpoint import find_checkpoint, load_model_state

    if recipe.model.get("type") != "entropy_lm":
        raise ConfigError(
            f"calibrate runs on an entropy-model recipe (model.type = 'entropy_lm'), got "
            f"'{recipe.model.get('type')}'; e.g. recipes/entropy_tiny.toml --set job.task=calibrate"
        )
    where = recipe.checkpoint.load_path or recipe.job.dump_dir
    ckpt = find_checkpoint(resolve_path(recipe, where) if recipe.checkpoint.load_path else where)
    with torch.device(device):
        model = bltx.build_model(recipe)
    model.load_state_dict(load_model_state(ckpt))
    return model.eval(), ckpt


def patcher_table(recipe: Recipe, threshold: float, weights: str | None) -> dict:
    cfg = recipe.calibrate
    table = {"type": "entropy", "rule": cfg.rule}
    if weights is not None:
        table["checkpoint"] = weights
    if cfg.rule == "global":
        table["threshold"] = threshold
    else:
        table["relative_threshold"] = threshold
    if cfg.max_patch_length is not None:
        table["max_patch_length"] = cfg.max_patch_length
    table["model"] = dict(recipe.model["entropy_model"])
    return table


def patch_counts(recipe: Recipe, threshold: float, batches) -> tuple[float, int]:
    """(mean bytes per patch, most patches in one window) that the entropy patcher gives
    with `threshold` on precomputed entropies. The patcher is built on the meta device:
    given entropies it never runs its own model, so its weights do not matter."""
    with torch.device("meta"):
        patcher = build("patcher", patcher_table(recipe, threshold, None), where="calibrate")
    n_bytes = n_patches = most = 0
    for ids, ent in batches:
        starts = patcher(ids, entropies=ent)
        n_bytes += ids.numel()
        n_patches += int(starts.sum())
        most = max(most, int(starts.sum(dim=1).max()))
    return n_bytes / max(1, n_patches), most


def mean_patch_length(recipe: Recipe, threshold: float, batches) -> float:
    return patch_counts(recipe, threshold, batches)[0]


def calibrate_threshold(recipe: Recipe, batches, iters: int = 40) -> tuple[float, float]:
    """Bisection on the threshold (mean patch length grows with it) -> (threshold, length)."""
    target = recipe.calibrate.target_patch_length
    hi = max(float(e.max()) for _, e in batches) + 1e-3
    lo = 0.0 if recipe.calibrate.rule == "global" else -hi
    lo_len, hi_len = mean_patch_length(recipe, lo, batches), mean_patch_length(recipe, hi, batches)
    if not lo_len <= target <= hi_len:
        raise ConfigError(
            f"calibrate.target_patch_length = {target} is out of reach: this entropy model gives "
            f"{lo_len:.2f} to {hi_len:.2f} bytes per patch on the validation split"
        )
    for _ in range(iters):
        mid = 0.5 * (lo + hi)
        if mean_patch_length(recipe, mid, batches) < target:
            lo = mid
        else:
            hi = mid
    # Of the two ends of the final bracket, the one whose length is closer to the target.
    lengths = {t: mean_patch_length(recipe, t, batches) for t in (lo, hi)}
    best = min(lengths, key=lambda t: abs(lengths[t] - target))
    return best, lengths[best]


@register("task", "calibrate")
def calibrate(recipe: Recipe) -> int:
    """Entropy workflow step 2 (see module docstring)."""
    from bltx.device import pick_device

    cfg = recipe.calibrate
    device = pick_device(recipe.job.device)
    model, ckpt = _entropy_lm_with_weights(recipe, device)
    if cfg.weights_dtype != "float32":
        # Calibrate on the weights the patcher will load (rounded to weights_dtype).
        with torch.no_grad():
            for p in model.parameters():
                p.copy_(p.to(getattr(torch, cfg.weights_dtype)).float())
    data = build_data_for_recipe(recipe)
    if data.validation is None:
        raise DataError("calibrate measures patch lengths on the validation split; set data.validation_fraction > 0")
    batches = []
    with torch.no_grad():
        for batch in validation_batches(data.validation, recipe.data.batch_size, cfg.batches):
            ids = batch["ids"].to(device)
            batches.append((ids.cpu(), model.entropies(ids).float().cpu()))
    threshold, length = calibrate_threshold(recipe, batches)

    weights = Path(cfg.weights_out or Path(recipe.job.dump_dir) / "entropy_model.pt")
    weights.parent.mkdir(parents=True, exist_ok=True)
    cast = getattr(torch, cfg.weights_dtype)
    state = {k: (v.to(cast) if v.is_floating_point() else v).cpu() for k, v in model.state_dict().items()}
    torch.save(state, weights)

    n_bytes = sum(ids.numel() for ids, _ in batches)
    _, most = patch_counts(recipe, threshold, batches)
    header = (
        f"# Written by the bltx `calibrate` task from {ckpt} on {time.strftime('%Y-%m-%d')}:\n"
        f"# {cfg.rule} rule, target {cfg.target_patch_length} bytes/patch -> {length:.3f} measured\n"
        f"# on {n_bytes} validation bytes (windows of {recipe.data.seq_len}: at most {most} patches\n"
        f"# in one; keep model.max_patches above that). Include it in a BLT recipe.\n"
        f"# The checkpoint path is relative to the folder the run starts in (the repo root).\n"
    )
    body = dumps_toml({"model": {"patcher": patcher_table(recipe, threshold, str(weights))}})
    out = Path(cfg.output)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(header + body + "\n", encoding="utf-8")
    print(
        f"calibrated {cfg.rule} threshold {threshold:.4f} -> mean patch length {length:.3f} "
        f"(target {cfg.target_patch_length}, at most {most} patches per window); wrote {out} and {weights} "
        f"({weights.stat().st_size / 1024:.0f} KiB)",
        flush=True,
    )
    return 0


@register("task", "precompute_entropies")
def precompute_entropies(recipe: Recipe) -> int:
    """Run the recipe's entropy patcher over all of `data.paths` once and store the
    entropies at `data.entropies_path`; training then patches from the stored values."""
    from bltx.device import pick_device

    if not recipe.data.entropies_path:
        raise ConfigError("precompute_entropies writes data.entropies_path; set it, e.g. runs/entropies.npy")
    device = pick_device(recipe.job.device)
    # Only the (frozen, loaded) patcher is used: a plain build on the device will do.
    with torch.device(device):
        model = bltx.build_model(recipe)
    if not (has(model, "patcher") and has(model.patcher, "entropies")):
        raise ConfigError("precompute_entropies needs a model whose patcher computes entropies (model.patcher.type = 'entropy')")
    base = Path(recipe.source).parent if recipe.source else None
    stream = open_stream(recipe.data, base)
    # Written relative to the current folder (like job.dump_dir); training finds it there.
    out = Path(recipe.data.entropies_path).expanduser()
    from bltx.train.metrics import ProgressBar

    bar = None

    def progress(done: int, total: int) -> None:
        nonlocal bar
        bar = bar or ProgressBar(total, recipe.metrics.progress_bar)
        bar.update(done, "chunks")

    t0 = time.perf_counter()
    values = compute_entropies(
        stream, model.patcher.entropies, chunk=recipe.data.seq_len, context=recipe.data.seq_len,
        batch_size=max(8, recipe.data.batch_size), device=device, progress=progress,
    )
    if bar is not None:
        bar.close()
    save_entropies(out, values, stream, producer_of(recipe.model.get("patcher")))
    print(f"wrote {len(values)} entropies to {out} in {time.perf_counter() - t0:.1f}s", flush=True)
    return 0
