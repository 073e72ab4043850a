"""One loader for every kind of saved model: a run folder, a trainer checkpoint, a
converted folder (model.toml + model.pt) or a Hugging Face BLT folder.

    model, recipe = load_model(path)            # built on `device`, weights in, eval mode
    export_hf(path, out)                        # any of them -> a BltForCausalLM folder

A run or checkpoint brings its own recipe (the checkpoint's recipe.toml: the model and its
[adapter]); a converted folder its model.toml; a HF folder its config.json. So the model
needs no recipe from the caller. With `merge=True` adapters are folded into the weights.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from bltx.checkpoint import load_exactly
from bltx.errors import CheckpointError
from bltx.interop.hf_folder import is_hf_folder
from bltx.sections import Recipe

RUN_RECIPE = "recipe.toml"


def is_model_folder(path: Path) -> bool:
    """A folder whose model carries its own shape but is no trainer checkpoint."""
    return path.is_dir() and ((path / "model.toml").is_file() or is_hf_folder(path))


def _recipe_with_model(table: dict, base: Recipe | None) -> Recipe:
    import copy

    recipe = copy.deepcopy(base) if base is not None else Recipe()
    recipe.model = table
    recipe.adapter = None
    return recipe


def _build(recipe: Recipe, device) -> nn.Module:
    import bltx
    from bltx.model.adapters import attach_adapters

    with torch.device("meta"):
        model = bltx.build_model(recipe)
        attach_adapters(model, recipe.adapter)
    return model.to_empty(device=device)


def _load_exact(model: nn.Module, state: dict, where) -> None:
    load_exactly(model, state, str(where), "its model", "the model its recipe describes")


def load_model(path: str | Path, device="cpu", base: Recipe | None = None,
               merge: bool = False) -> tuple[nn.Module, Recipe]:
    """(model in eval mode, the recipe it belongs to) for any kind of saved model (module
    doc). `base`: the recipe whose other sections a folder without one takes (data, ...)."""
    from bltx.config import read_toml, recipe_from_table
    from bltx.model.adapters import merge_adapters
    from bltx.checkpoint import find_checkpoint, load_model_state

    p = Path(path)
    if not p.exists():
        raise CheckpointError(f"{p} does not exist; name a run folder, a checkpoint, a converted folder "
                              f"or a Hugging Face BLT folder")
    if p.is_dir() and (p / "model.toml").is_file():
        table = read_toml(p / "model.toml").get("model")
        if not isinstance(table, dict):
            raise CheckpointError(f"{p / 'model.toml'} has no [model] table")
        recipe = _recipe_with_model(table, base)
        model = _build(recipe, device)
        # the checked reader: one line for garbage, non-tensors or NaN/inf weights
        _load_exact(model, load_model_state(p / "model.pt"), p / "model.pt")
    elif is_hf_folder(p):
        from bltx.interop.hf_folder import SafetensorsWeights, hf_model_table
        from bltx.interop.hf import hf_key_map

        recipe = _recipe_with_model(hf_model_table(p), base)
        model = _build(recipe, device)
        files = SafetensorsWeights(p)
        keys = list(model.state_dict())
        names = hf_key_map(model, keys)
        lost = [names[k] for k in keys if names[k] not in set(files.keys())]
        if lost:
            raise CheckpointError(f"{p} lacks weights its config needs (e.g. '{lost[0]}'); re-save the folder")
        _load_exact(model, {k: files.read(names[k], ()) for k in keys}, p)
    elif p.is_file():
        raise CheckpointError(f"{p} is a bare state dict: it holds no model shape; use it as init.path "
                              f"in a recipe, or load it into bltx.build_model(recipe)")
    else:
        ckpt = find_checkpoint(p)
        text = ckpt / RUN_RECIPE
        if not text.is_file():
            raise CheckpointError(f"checkpoint {ckpt} has no {RUN_RECIPE}; load it with its recipe "
                                  f"(python -m bltx.run RECIPE --set eval.checkpoint=...)")
        recipe = recipe_from_table(read_toml(text))
        model = _build(recipe, device)
        _load_exact(model, load_model_state(ckpt), ckpt)
    if merge:
        merge_adapters(model)
        recipe.adapter = None
    return model.eval(), recipe


def export_hf(path: str | Path, out: str | Path) -> Path:
    """Write any saved model (see load_model) as a HF `save_pretrained` folder, adapters
    merged into the weights; tensors in float32."""
    from bltx.interop.hf import to_hf

    if is_hf_folder(Path(path)) and not (Path(path) / "model.toml").is_file():
        raise CheckpointError(f"{path} is already a Hugging Face folder; to-hf takes a run, a trainer "
                              f"checkpoint or a converted folder")
    model, _ = load_model(path, merge=True)
    hf = to_hf(model.float())
    out = Path(out)
    hf.save_pretrained(out)
    return out
