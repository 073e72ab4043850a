"""The `train` task: `python -m bltx.run RECIPE` with `job.task = "train"` (the default)."""

from __future__ import annotations

import os

from bltx.registry import register
from bltx.sections import Recipe


@register("task", "train")
def train(recipe: Recipe) -> int:
    """Train the recipe's model; resumes from the dump folder's newest checkpoint. One run
    per dump folder (bltx/train/run_lock.py): the first rank holds the folder's lock."""
    from bltx.train.launch_check import check_launch
    from bltx.train.run_lock import RunLock
    from bltx.train.trainer import Trainer

    check_launch(recipe)
    lock = RunLock.acquire(recipe.job.dump_dir) if os.environ.get("RANK", "0") == "0" else None
    try:
        return Trainer(recipe).fit()
    finally:
        if lock is not None:
            lock.release()
