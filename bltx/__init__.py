"""bltx: a research framework for the Byte Latent Transformer.

    import bltx
    recipe = bltx.load_recipe("recipes/tiny.toml", overrides=["training.steps=10"])
    model = bltx.build_model(recipe)
    logits = model(ids).logits                # [B, T, 260] (a ModelOutput, bltx/model/output.py)
    starts = bltx.build("patcher", {"type": "static", "stride": 4})(ids)
    model = bltx.load("runs/tiny")            # a run, checkpoint, converted or HF folder
    model.generate("ROMEO:", max_bytes=80); model.score("some text"); model.recipe
"""

from bltx.config import load_recipe
from bltx.sections import Recipe
from bltx.errors import BltxError, CheckpointError, ConfigError, DataError
from bltx.registry import build, get_registry, register

__version__ = "0.1.0"


def build_model(recipe_or_table, **context):
    """Build the model described by a recipe (its [model] table) or by a model table."""
    table = recipe_or_table.model if isinstance(recipe_or_table, Recipe) else recipe_or_table
    return build("model", table, where="model", **context)


def load(path, device="cpu", merge_adapters: bool = False):
    """The model saved at `path` (a run folder, a trainer checkpoint, a converted folder or
    a Hugging Face BLT folder) in eval mode, with its recipe as `model.recipe` and text
    helpers `model.generate(prompt, ...)` and `model.score(text)` (bltx/train/text.py)."""
    from bltx.train.pretrained import load_model
    from bltx.train.text import attach_text_helpers

    model, recipe = load_model(path, device, merge=merge_adapters)
    return attach_text_helpers(model, recipe)


__all__ = [
    "BltxError",
    "CheckpointError",
    "ConfigError",
    "DataError",
    "build",
    "build_model",
    "get_registry",
    "load",
    "load_recipe",
    "register",
]
