"""bltx: a research framework for the Byte Latent Transformer.

    import bltx
    recipe = bltx.load_recipe("recipes/tiny.toml", overrides=["training.steps=10"])
    model = bltx.build_model(recipe)
    logits = model(ids)                       # [B, T, 260]
    starts = bltx.build("patcher", {"type": "static", "stride": 4})(ids)
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


__all__ = [
    "BltxError",
    "CheckpointError",
    "ConfigError",
    "DataError",
    "build",
    "build_model",
    "get_registry",
    "load_recipe",
    "register",
]
