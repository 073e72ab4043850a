"""Reading a Hugging Face `save_pretrained` folder without loading the model: its
config.json as a bltx [model] table, and its safetensors weights tensor by tensor, slice
by slice (what [init] on a sharded layout needs: each rank reads only the rows it holds).

    table = hf_model_table(folder)            # ConfigError: not a BLT; CheckpointError: damaged
    weights = SafetensorsWeights(folder)      # single file or sharded (model.safetensors.index.json)
    weights.shape("lm_head.weight"); weights.read("lm_head.weight", (slice(0, 8), slice(None)))

`transformers` (its BltConfig fills the defaults config.json leaves out) is imported only here.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from bltx.errors import CheckpointError, ConfigError

CONFIG = "config.json"
SINGLE = "model.safetensors"
INDEX = "model.safetensors.index.json"


def is_hf_folder(path: Path) -> bool:
    return path.is_dir() and (path / CONFIG).is_file()


def _read_json(path: Path) -> dict:
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise CheckpointError(f"{path} is damaged ({type(exc).__name__}: {str(exc).splitlines()[0]}); "
                              f"re-save the folder with save_pretrained") from None
    if not isinstance(value, dict):
        raise CheckpointError(f"{path} does not hold a JSON object; re-save the folder with save_pretrained")
    return value


def hf_model_table(folder: str | Path) -> dict:
    """The bltx [model] table of a HF BLT folder's config.json (tools/convert_hf.py's map)."""
    folder = Path(folder)
    if not folder.exists():
        raise CheckpointError(f"{folder} does not exist; name a Hugging Face BLT folder, a run or a checkpoint")
    if not is_hf_folder(folder):
        raise CheckpointError(f"{folder} is not a Hugging Face model folder (no {CONFIG})")
    raw = _read_json(folder / CONFIG)
    kind = raw.get("model_type")
    if kind != "blt":
        raise ConfigError(f"{folder / CONFIG}: model_type is '{kind}', not 'blt'; bltx loads Hugging Face "
                          f"BltForCausalLM folders only (convert other models with their own tools)")
    try:
        from transformers import BltConfig
    except ImportError:
        raise ConfigError("reading a Hugging Face folder needs `transformers`; pip install transformers") from None
    from bltx.interop.hf_config import recipe_from_hf_config

    try:
        config = BltConfig.from_dict(raw)
    except (TypeError, ValueError, KeyError) as exc:
        raise CheckpointError(f"{folder / CONFIG} is not a valid BltConfig: {str(exc).splitlines()[0]}") from None
    return recipe_from_hf_config(config)


class SafetensorsWeights:
    """The tensors of a HF folder, opened lazily (one safetensors file handle per shard)."""

    def __init__(self, folder: str | Path):
        from safetensors import safe_open

        self.folder = Path(folder)
        if (self.folder / INDEX).is_file():
            weight_map = _read_json(self.folder / INDEX).get("weight_map")
            if not isinstance(weight_map, dict):
                raise CheckpointError(f"{self.folder / INDEX} has no weight_map; re-save the folder")
            files = sorted(set(weight_map.values()))
        elif (self.folder / SINGLE).is_file():
            files, weight_map = [SINGLE], None
        else:
            raise CheckpointError(f"{self.folder} holds no safetensors weights ({SINGLE} or {INDEX}); "
                                  f"save it with save_pretrained(safe_serialization=True)")
        self._handles, self._where = {}, {}
        for name in files:
            path = self.folder / name
            try:
                handle = safe_open(str(path), framework="pt")
            except Exception as exc:  # safetensors raises its own error types for bad headers
                raise CheckpointError(f"{path} is damaged or missing ({str(exc).splitlines()[0]}); "
                                      f"re-download or re-save the folder") from None
            self._handles[name] = handle
            for key in handle.keys():
                self._where[key] = name
        if weight_map is not None:
            lost = sorted(k for k, f in weight_map.items() if self._where.get(k) != f)
            if lost:
                raise CheckpointError(f"{self.folder / INDEX} names '{lost[0]}' in {weight_map[lost[0]]}, "
                                      f"which does not hold it; re-save the folder")

    def keys(self) -> list[str]:
        return list(self._where)

    def shape(self, key: str) -> tuple[int, ...]:
        return tuple(self._handles[self._where[key]].get_slice(key).get_shape())

    def read(self, key: str, index: tuple[slice, ...]) -> torch.Tensor:
        """The `index` slices of tensor `key` (only those bytes are read from disk)."""
        part = self._handles[self._where[key]].get_slice(key)
        try:
            return part[index] if index else part[:]
        except Exception as exc:
            raise CheckpointError(f"cannot read '{key}' from {self.folder}: {str(exc).splitlines()[0]}; "
                                  f"the file is damaged") from None
