"""Research tasks: `python -m bltx.run RECIPE --set job.task=cute|noised_eval`."""

from __future__ import annotations

from bltx.errors import ConfigError
from bltx.registry import register
from bltx.train.trained import checkpoint_for_eval, load_trained_model


def _load_for_eval(recipe):
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


@register("task", "cute")
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


@register("task", "noised_eval")
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

