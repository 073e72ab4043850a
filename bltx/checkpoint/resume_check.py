"""What changed between the recipe a checkpoint was saved with and the one resuming it.

A resume that silently keeps the checkpoint's settings, or silently loads weights into a
differently configured model, loses a researcher's intent. So:
  - a change under `[model]` that keeps tensor shapes (heads, window, rope theta, the
    patcher's threshold, ...) would load without error and change what the weights mean:
    refused in one line naming the keys, unless `checkpoint.allow_model_changes = true`;
  - keys that do not change the model's function (attention backend, the static patch
    bound) are free;
  - every other change (optimizer, schedule, steps, data, layout, precision) is applied
    and announced: the trainer takes these from the new recipe, not from the checkpoint.
"""

from __future__ import annotations

import tomllib
from pathlib import Path

# Model keys that change how the model is computed, never what it computes.
FUNCTION_FREE = ("attention", "max_patches")
# Bookkeeping that differs between a run and its resume by design.
NOT_ANNOUNCED = ("checkpoint.load_path", "checkpoint.auto_resume", "job.dump_dir")


def flatten(table: dict, prefix: str = "") -> dict[str, object]:
    out: dict[str, object] = {}
    for key, value in table.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(flatten(value, name + "."))
        else:
            out[name] = value
    return out


def _is_function_free(key: str) -> bool:
    return key.split(".")[-1] in FUNCTION_FREE


def diff_recipes(saved: dict, new: dict) -> tuple[list[str], list[str]]:
    """(model keys that changed, other changes as 'key old -> new'), both sorted."""
    a, b = flatten(saved), flatten(new)
    model_changes, other = [], []
    for key in sorted(set(a) | set(b)):
        old, cur = a.get(key, "<unset>"), b.get(key, "<unset>")
        if old == cur or key in NOT_ANNOUNCED:
            continue
        if key.startswith("model.") and not _is_function_free(key):
            model_changes.append(key)
        else:
            other.append(f"{key} {old!r} -> {cur!r}")
    return model_changes, other


def check_resume(checkpoint: Path, new_recipe_toml: str, allow_model_changes: bool) -> list[str]:
    """Compare the checkpoint's recipe.toml with the new recipe. Returns the announced
    changes; raises CheckpointError (one line) on model changes unless allowed. A
    checkpoint without a recipe (written by other tools) is not compared."""
    from bltx.errors import CheckpointError

    saved_file = Path(checkpoint) / "recipe.toml"
    if not saved_file.is_file():
        return []
    try:
        saved = tomllib.loads(saved_file.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError, OSError) as exc:
        raise CheckpointError(f"checkpoint {checkpoint}: its recipe.toml cannot be read ({exc})") from None
    model_changes, other = diff_recipes(saved, tomllib.loads(new_recipe_toml))
    if model_changes and not allow_model_changes:
        shown = ", ".join(model_changes[:5]) + (" ..." if len(model_changes) > 5 else "")
        raise CheckpointError(
            f"checkpoint {checkpoint} was saved with other model settings ({shown}); the weights "
            f"would load but mean something else. Resume with the saved values (see its "
            f"recipe.toml), use a fresh job.dump_dir, or set checkpoint.allow_model_changes = true"
        )
    return [f"model change allowed: {k}" for k in model_changes] + other
