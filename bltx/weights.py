"""Reading model weights: checkpoint folders written by the trainer (torch.distributed
.checkpoint), plain `.pt` state dicts, and files bundled with bltx (`bltx:NAME`).

This sits below `patching/`, `model/` and `train/` so any of them can load weights (the
entropy patcher loads its entropy model's weights here); writing checkpoints belongs to
`train/checkpoint.py`.
"""

from __future__ import annotations

import os
import re
import warnings
from contextlib import contextmanager
from pathlib import Path

import torch
import torch.distributed.checkpoint as dcp
from torch.distributed.checkpoint.metadata import TensorStorageMetadata

from bltx.errors import CheckpointError

BUNDLED_PREFIX = "bltx:"
BUNDLED_DIR = Path(__file__).resolve().parent / "data" / "corpora"

MARKER = "COMPLETE"
_STEP_DIR = re.compile(r"^step_(\d+)$")


@contextmanager
def quiet_dcp():
    # DCP warns on every call that it assumes a single process when no process group exists;
    # that is exactly our single-process case, so the warning is noise.
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*torch.distributed.*")
        warnings.filterwarnings("ignore", category=FutureWarning)
        yield


def step_dir_name(step: int) -> str:
    return f"step_{step:08d}"


def complete_checkpoints(folder: Path) -> list[tuple[int, Path]]:
    """(step, path) of every complete checkpoint in `folder`, oldest first."""
    if not folder.is_dir():
        return []
    found = []
    for child in folder.iterdir():
        m = _STEP_DIR.match(child.name)
        if m and (child / MARKER).is_file():
            found.append((int(m.group(1)), child))
    return sorted(found)


def find_checkpoint(path: str | os.PathLike) -> Path:
    """A checkpoint folder, a `checkpoints/` folder or a run's dump folder -> the newest
    complete checkpoint in it. CheckpointError when there is none."""
    p = Path(path)
    if not p.exists():
        raise CheckpointError(f"checkpoint path {p} does not exist")
    if (p / ".metadata").is_file() or _STEP_DIR.match(p.name):
        if not (p / MARKER).is_file():
            raise CheckpointError(
                f"checkpoint {p} is incomplete (no {MARKER} marker: its save was interrupted); "
                f"use an earlier checkpoint"
            )
        return p
    for folder in (p / "checkpoints", p):
        found = complete_checkpoints(folder)
        if found:
            return found[-1][1]
    raise CheckpointError(f"no complete checkpoint under {p}")


def latest_checkpoint(dump_dir: Path) -> Path | None:
    found = complete_checkpoints(dump_dir / "checkpoints")
    return found[-1][1] if found else None


def saved_tensor_shapes(ckpt: Path, prefix: str = "model.") -> dict[str, tuple[torch.Size, torch.dtype]]:
    """Key (without `prefix`) -> (shape, dtype) of each tensor saved under `prefix`."""
    try:
        meta = dcp.FileSystemReader(str(ckpt)).read_metadata()
    except Exception as exc:  # corrupt or foreign folder: say so in one line
        raise CheckpointError(f"cannot read checkpoint metadata in {ckpt}: {exc}") from None
    out = {}
    for key, item in meta.state_dict_metadata.items():
        if key.startswith(prefix) and isinstance(item, TensorStorageMetadata):
            out[key[len(prefix):]] = (item.size, item.properties.dtype)
    return out


def bundled_file(name: str, suffix: str) -> Path:
    """`bltx:NAME` -> the file bltx/data/corpora/NAME (or NAME + suffix)."""
    for candidate in (BUNDLED_DIR / name, BUNDLED_DIR / f"{name}{suffix}"):
        if candidate.is_file():
            return candidate
    names = sorted(p.name for p in BUNDLED_DIR.iterdir() if p.suffix == suffix)
    raise CheckpointError(
        f"no bundled file '{BUNDLED_PREFIX}{name}'; bundled: {', '.join(BUNDLED_PREFIX + n for n in names)}"
    )


def load_model_state(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """The full (unsharded) model state dict of a checkpoint, as plain CPU tensors.

    `path` is a checkpoint folder, a run's dump folder (its newest checkpoint), a `.pt`
    file holding a state dict, or `bltx:NAME` for a file bundled in bltx/data/corpora.
    """
    text = str(path)
    if text.startswith(BUNDLED_PREFIX):
        path = bundled_file(text[len(BUNDLED_PREFIX):], suffix=".pt")
    p = Path(path)
    if p.is_file():
        try:
            state = torch.load(p, map_location="cpu", weights_only=True)
        except Exception as exc:
            raise CheckpointError(f"cannot read state dict file {p}: {str(exc).splitlines()[0]}") from None
        if isinstance(state, dict) and "model" in state and isinstance(state["model"], dict):
            state = state["model"]
        if not isinstance(state, dict):
            raise CheckpointError(f"{p} does not hold a state dict")
        return state
    ckpt = find_checkpoint(p)
    shapes = saved_tensor_shapes(ckpt)
    if not shapes:
        raise CheckpointError(f"checkpoint {ckpt} holds no model tensors")
    model = {k: torch.empty(size, dtype=dtype) for k, (size, dtype) in shapes.items()}
    with quiet_dcp():
        dcp.load({"model": model}, checkpoint_id=str(ckpt))
    return model
