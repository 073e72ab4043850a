"""The `train` task: `python -m bltx.run RECIPE` with `job.task = "train"` (the default)."""

from __future__ import annotations

from bltx.registry import register
from bltx.sections import Recipe


@register("task", "train")
def train(recipe: Recipe) -> int:
    """Train the recipe's model; resumes from the dump folder's newest checkpoint."""
    from bltx.train.launch_check import check_launch
    from bltx.train.trainer import Trainer

    check_launch(recipe)
    return Trainer(recipe).fit()
