"""Reading model weights: checkpoint folders written by the trainer (torch.distributed
.checkpoint), plain `.pt` state dicts, and files bundled with bltx (`bltx:NAME`).

This sits below `patching/`, `model/` and `train/` so any of them can load weights (the
entropy patcher loads its entropy model's weights here); writing checkpoints belongs to
`manager.py` beside it.
"""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path
from typing import Callable

import torch
from torch.distributed.checkpoint.metadata import TensorStorageMetadata

from bltx.bundled import PREFIX as BUNDLED_PREFIX
from bltx.bundled import bundled_path
from bltx.checkpoint import manifest
from bltx.checkpoint.dcp_io import load_state, read_metadata
from bltx.checkpoint.manifest import MARKER
from bltx.errors import CheckpointError

_STEP_DIR = re.compile(r"^step_(\d+)$")


def warn(message: str) -> None:
    """One `warning:` line on stderr, from the first rank only (every rank finds the same)."""
    if os.environ.get("RANK", "0") == "0":
        print(f"warning: {message}", file=sys.stderr, flush=True)


def step_dir_name(step: int) -> str:
    if step < 0:  # a parsed trainer state never has one (trainer_state.py)
        raise ValueError(f"step {step} < 0")
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


_legacy_noted: set[Path] = set()


def checkpoint_problem(ckpt: Path, report: Callable[[str], None] = warn) -> str | None:
    """Why checkpoint folder `ckpt` fails verification, or None. Every entry must be a
    regular file or folder (a FIFO would hang the load, a link could lead out of the
    folder), then the files must match the manifest. A legacy checkpoint (written before
    manifests) passes with a notice once; resume still skips it if it does not load."""
    odd = manifest.irregular_entry(ckpt)
    if odd is not None:
        return f"checkpoint {ckpt} failed verification: {odd}"
    if not manifest.has_manifest(ckpt):
        if ckpt not in _legacy_noted:
            _legacy_noted.add(ckpt)
            report(f"checkpoint {ckpt} has no manifest (written by an older bltx); loading it unverified")
        return None
    reason = manifest.problem(ckpt)
    return None if reason is None else f"checkpoint {ckpt} failed verification: {reason}"


def newest_good_checkpoint(folder: Path, report: Callable[[str], None] = warn) -> Path | None:
    """The newest complete checkpoint in `folder` that verifies; each newer one that does not
    is reported in one line and skipped (resume falls back to the last good save). None when
    `folder` holds no complete checkpoint; CheckpointError when none of them verifies."""
    found = complete_checkpoints(folder)
    failures = []
    for _, ckpt in reversed(found):
        reason = checkpoint_problem(ckpt, report)
        if reason is not None:
            failures.append(reason)
            continue
        for text in failures:
            report(f"{text}; falling back to {ckpt.name}")
        return ckpt
    if failures:
        raise CheckpointError(
            f"none of the {len(found)} checkpoints in {folder} passes verification (newest: "
            f"{failures[0]}); move them away or use a fresh job.dump_dir"
        )
    return None


def find_checkpoint(path: str | os.PathLike, report: Callable[[str], None] = warn) -> Path:
    """A checkpoint folder, a `checkpoints/` folder or a run's dump folder -> a verified
    checkpoint: the one named (CheckpointError if it fails verification), or the newest
    good one in the folder. CheckpointError when there is none."""
    p = Path(path)
    if not p.exists():
        raise CheckpointError(f"checkpoint path {p} does not exist")
    if (p / ".metadata").is_file() or _STEP_DIR.match(p.name):
        if not (p / MARKER).is_file():
            raise CheckpointError(
                f"checkpoint {p} is incomplete (no {MARKER} marker: its save was interrupted); "
                f"use an earlier checkpoint"
            )
        reason = checkpoint_problem(p, report)
        if reason is not None:
            raise CheckpointError(f"{reason}; use another checkpoint")
        return p
    for folder in (p / "checkpoints", p):
        good = newest_good_checkpoint(folder, report)
        if good is not None:
            return good
    raise CheckpointError(f"no complete checkpoint under {p}")


def saved_tensor_shapes(ckpt: Path, prefix: str = "model.") -> dict[str, tuple[torch.Size, torch.dtype]]:
    """Key (without `prefix`) -> (shape, dtype) of each tensor saved under `prefix`."""
    meta = read_metadata(ckpt)  # allow-listed unpickling: CheckpointError if anything else
    out = {}
    for key, item in meta.state_dict_metadata.items():
        if key.startswith(prefix) and isinstance(item, TensorStorageMetadata):
            out[key[len(prefix):]] = (item.size, item.properties.dtype)
    return out


def bundled_file(name: str, suffix: str) -> Path:
    """`bltx:NAME` -> the file bltx/data/corpora/NAME (or NAME + suffix)."""
    return bundled_path(name, suffix, CheckpointError)


def load_model_state(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """The full (unsharded) model state dict of a checkpoint, as plain CPU tensors.

    `path` is a checkpoint folder, a run's dump folder (its newest checkpoint), a `.pt`
    file holding a state dict, or `bltx:NAME` for a file bundled in bltx/data/corpora.
    """
    text = str(path)
    if text.startswith(BUNDLED_PREFIX):
        path = bundled_file(text[len(BUNDLED_PREFIX):], suffix=".pt")
    p = Path(path)
    if p.exists() and not p.is_file() and not p.is_dir():
        raise CheckpointError(f"{p} is not a regular file or folder; name a .pt file or a checkpoint folder")
    if p.is_file():
        try:
            state = torch.load(p, map_location="cpu", weights_only=True)
        except Exception as exc:
            reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            if "Weights only load failed" in reason:  # torch's advice (weights_only=False) is unsafe
                reason = "not a torch.save file of plain tensors (bltx never unpickles other objects)"
            raise CheckpointError(f"cannot read state dict file {p}: {reason}") from None
        if isinstance(state, dict) and "model" in state and isinstance(state["model"], dict):
            state = state["model"]
        if not isinstance(state, dict) or not all(isinstance(k, str) and torch.is_tensor(v) for k, v in state.items()):
            raise CheckpointError(f"{p} does not hold a state dict (names -> tensors)")
        require_finite(state, f"weights file {p}")
        return state
    ckpt = find_checkpoint(p)
    shapes = saved_tensor_shapes(ckpt)
    if not shapes:
        raise CheckpointError(f"checkpoint {ckpt} holds no model tensors")
    model = {k: torch.empty(size, dtype=dtype) for k, (size, dtype) in shapes.items()}
    load_state({"model": model}, ckpt)
    require_finite(model, f"checkpoint {ckpt}")
    return model


def load_exactly(module: torch.nn.Module, state: dict[str, torch.Tensor], subject: str, target: str,
                 place: str, fix: str = "") -> None:
    """Load `state` into `module`, every name and shape exact, or one CheckpointError line:
    the first tensor of another shape (`subject` does not fit `target`: '...' is [..] there,
    [..] in `place``fix`), else the first missing and unexpected names. The shapes are
    checked first because load_state_dict reports a mismatch as a many-line error."""
    own = module.state_dict()
    wrong = next((k for k, v in state.items() if k in own and tuple(v.shape) != tuple(own[k].shape)), None)
    if wrong is not None:
        raise CheckpointError(f"{subject} does not fit {target}: '{wrong}' is {list(state[wrong].shape)} there, "
                              f"{list(own[wrong].shape)} in {place}{fix}")
    missing, unexpected = module.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise CheckpointError(f"{subject} does not fit {target}: missing {sorted(missing)[:3]}, "
                              f"unexpected {sorted(unexpected)[:3]}")


def require_finite(state: dict[str, torch.Tensor], where: object) -> None:
    """CheckpointError (one line) if any floating tensor of `state` holds NaN/inf: weights
    of a diverged run would make every output NaN (an entropy model: every byte a patch
    boundary) without a word. Every loaded part goes through here."""
    bad = next((k for k, v in state.items() if v.is_floating_point() and not torch.isfinite(v).all()), None)
    if bad is not None:
        raise CheckpointError(f"{where} holds non-finite weights (e.g. '{bad}'); use weights from before the run diverged")
