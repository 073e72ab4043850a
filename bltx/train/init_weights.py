"""[init]: start a fresh run from weights (a HF BLT folder, a bltx run or checkpoint, a
converted folder or a `.pt` state dict), on any layout, each rank reading only what it holds.

    recipe = adopt_init_model(recipe, overrides)   # HF folder: its config.json is [model]
    ...build, parallelize, materialize (seeded init)...
    load_init(model, recipe)                        # the trainer, on a fresh start only

How each kind is read without a whole model per rank:
- HF folder: safetensors, one tensor slice at a time (`get_slice`): a rank reads the rows
  of its own shard of each parameter (bltx.model.init.local_part gives its offset).
- `.pt` / converted folder (model.toml + model.pt): memory-mapped, then sliced the same way
  (pages a rank does not touch are never read).
- bltx checkpoint or run folder: torch.distributed.checkpoint loads into the model's own
  sharded state dict (DCP reads each rank's pieces), model tensors only.
Adapter parameters and `init.ignore` globs keep their seeded init. Names and shapes are
checked before anything is copied: a mismatch is one line naming the first few.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
from torch import nn

from bltx.config import parse_override, resolve_path
from bltx.errors import CheckpointError, ConfigError
from bltx.interop.hf_folder import CONFIG, SafetensorsWeights, hf_model_table, is_hf_folder
from bltx.model.adapters import is_adapter_param
from bltx.model.init import canonical_name, local_part
from bltx.train.finetune import check_globs, matches

# [model] keys an override may change on a HF-shaped model: none of them changes a weight's
# shape (the attention backend, the static patch axis, where patches are cut).
FREE_KEYS = ("attention", "max_patches", "patcher.threshold", "patcher.max_patch_length",
             "patcher.rule", "decoder_lookahead")


def _say(message: str) -> None:
    if os.environ.get("RANK", "0") == "0":
        print(message, flush=True)


def init_path(recipe) -> Path | None:
    return resolve_path(recipe, recipe.init.path) if recipe.init.path else None


def adopt_init_model(recipe, overrides=(), say=_say):
    """With `init.path` a HF folder (or a converted one), replace the recipe's [model] by the
    one its config.json (model.toml) describes, keeping `--set model...` overrides that do not change a weight's shape; one
    that does (and disagrees) is a ConfigError. Other recipes are returned as they are."""
    from bltx.registry import parse

    path = init_path(recipe)
    if path is None:
        return recipe
    if not path.exists():
        raise CheckpointError(f"init.path {path} does not exist; name a Hugging Face BLT folder, a run "
                              f"folder, a checkpoint or a .pt state dict")
    if (path / "model.toml").is_file():  # a converted folder: its model.toml is the shape
        from bltx.config import read_toml

        table, origin = read_toml(path / "model.toml").get("model"), path / "model.toml"
        if not isinstance(table, dict):
            raise CheckpointError(f"{origin} has no [model] table; convert the folder again")
    elif is_hf_folder(path):
        table, origin = hf_model_table(path), path / CONFIG
    else:
        return recipe
    for text in overrides:
        parts, value = parse_override(text)
        if parts[0] != "model" or len(parts) < 2:
            continue
        key = ".".join(parts[1:])
        node, found = table, True
        for part in parts[1:-1]:
            node = node.get(part) if isinstance(node, dict) else None
            if not isinstance(node, dict):
                found = False
                break
        fixed = node.get(parts[-1], None) if found else None
        if found and parts[-1] in node and fixed != value and key not in FREE_KEYS:
            raise ConfigError(f"--set model.{key}={value!r} disagrees with {origin} ({fixed!r}); "
                              f"with init.path a Hugging Face or converted folder the model's shape "
                              f"comes from its config: drop the override")
        if found:
            node[parts[-1]] = value
    recipe.model = parse("model", table, "model")  # checked once; build reuses its Config
    say(f"model: from {origin} (replaces the recipe's [model])")
    return recipe


# -- sources: name -> shape, and slices of one tensor at a time --------------------------------


class _HFSource:
    def __init__(self, folder: Path, model: nn.Module, wanted: list[str]):
        from bltx.interop.hf import hf_key_map

        self.files = SafetensorsWeights(folder)
        self.map = hf_key_map(model, wanted)  # bltx -> HF name
        back = {v: k for k, v in self.map.items()}
        present = set(self.files.keys())
        self.names = {back.get(k, f"(HF) {k}"): k for k in present}
        self.kind = "Hugging Face folder"

    def shapes(self) -> dict[str, tuple[int, ...]]:
        return {ours: self.files.shape(theirs) if not ours.startswith("(HF)") else () for ours, theirs in self.names.items()}

    def read(self, name: str, index: tuple[slice, ...]) -> torch.Tensor:
        return self.files.read(self.map[name], index)


class _StateDictSource:
    def __init__(self, path: Path, kind: str):
        try:
            state = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
        except Exception as exc:
            raise CheckpointError(f"cannot read state dict file {path}: {str(exc).splitlines()[0]}; "
                                  f"name a .pt saved with torch.save(model.state_dict())") from None
        if isinstance(state, dict) and isinstance(state.get("model"), dict):
            state = state["model"]
        if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
            raise CheckpointError(f"{path} does not hold a state dict of tensors")
        self.state = {canonical_name(k): v for k, v in state.items()}
        self.kind = kind

    def shapes(self) -> dict[str, tuple[int, ...]]:
        return {k: tuple(v.shape) for k, v in self.state.items()}

    def read(self, name: str, index: tuple[slice, ...]) -> torch.Tensor:
        t = self.state[name]
        return t[index] if index else t


def _targets(model: nn.Module, recipe) -> tuple[dict[str, torch.Tensor], list[str]]:
    """(canonical name -> parameter or persistent buffer to fill, names left at their init)."""
    everything = {canonical_name(k): v for k, v in model.state_dict(keep_vars=True).items()}
    check_globs(list(everything), recipe.init.ignore, "init.ignore")
    keep = [k for k in everything if is_adapter_param(k) or matches(k, recipe.init.ignore)]
    return {k: v for k, v in everything.items() if k not in keep}, keep


def _check_fit(where: str, saved: dict[str, tuple], targets: dict[str, torch.Tensor], ignore) -> None:
    missing = [k for k in targets if k not in saved]
    unexpected = [k for k in saved if k not in targets and not is_adapter_param(k) and not matches(k, ignore)]
    wrong = [(k, list(saved[k]), list(v.shape)) for k, v in targets.items()
             if k in saved and tuple(saved[k]) != tuple(v.shape)]
    if not (missing or unexpected or wrong):
        return
    parts = []
    if wrong:
        parts.append(f"{len(wrong)} shape mismatches (" + ", ".join(f"'{k}' saved {s}, model {m}" for k, s, m in wrong[:3]) + ")")
    if missing:
        parts.append(f"{len(missing)} missing (" + ", ".join(f"'{k}'" for k in missing[:3]) + ")")
    if unexpected:
        parts.append(f"{len(unexpected)} unexpected (" + ", ".join(f"'{k}'" for k in unexpected[:3]) + ")")
    raise CheckpointError(f"init.path {where} does not fit the model: {'; '.join(parts)}; use the model "
                          f"settings it was saved with, or list new parts in init.ignore")


def open_source(path: Path, model: nn.Module, wanted: list[str]):
    """The reader for `path` (a HF folder, a converted folder, a .pt file), or None for a
    trainer checkpoint / run folder (read with DCP)."""
    if not path.exists():
        raise CheckpointError(f"init.path {path} does not exist; name a Hugging Face BLT folder, a run "
                              f"folder, a checkpoint or a .pt state dict")
    if path.is_file():
        return _StateDictSource(path, ".pt state dict")
    if (path / "model.toml").is_file() and (path / "model.pt").is_file():
        return _StateDictSource(path / "model.pt", "converted bltx folder")
    if is_hf_folder(path):
        return _HFSource(path, model, wanted)
    return None


@torch.no_grad()
def load_init(model: nn.Module, recipe, log=_say) -> None:
    """Fill `model` (built and materialised on any layout) with the weights of init.path."""
    path = init_path(recipe)
    targets, kept = _targets(model, recipe)
    # Every name HF could hold (ignored parts too, so their HF tensors are not "unexpected").
    source = open_source(path, model, [*targets, *(k for k in kept if not is_adapter_param(k))])
    if source is None:
        ckpt = _load_checkpoint(model, path, targets, recipe.init.ignore)
        where, kind = ckpt, "checkpoint"
    else:
        _check_fit(str(path), source.shapes(), targets, recipe.init.ignore)
        for name, tensor in targets.items():
            local, offset, _ = local_part(tensor)
            if local.numel() == 0:
                continue
            index = tuple(slice(o, o + n) for o, n in zip(offset, local.shape))
            local.copy_(source.read(name, index))
        where, kind = path, source.kind
    left = f"; {len(kept)} left at their init (adapters, init.ignore)" if kept else ""
    log(f"init: {len(targets)} tensors from {where} ({kind}), fresh optimizer at step 0{left}")


def _load_checkpoint(model: nn.Module, path: Path, targets: dict, ignore) -> Path:
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict, set_model_state_dict

    from bltx.checkpoint import find_checkpoint, saved_tensor_shapes
    from bltx.checkpoint.dcp_io import load_state

    ckpt = find_checkpoint(path)
    saved = {k: tuple(size) for k, (size, _) in saved_tensor_shapes(ckpt).items()}
    if not saved:
        raise CheckpointError(f"init.path {ckpt} holds no model tensors; name another checkpoint")
    _check_fit(str(ckpt), saved, targets, ignore)
    state = {k: v for k, v in get_model_state_dict(model).items() if k in targets}
    load_state({"model": state}, ckpt)
    set_model_state_dict(model, state, options=StateDictOptions(strict=False))
    return ckpt
