"""Checkpoints with torch.distributed.checkpoint (DCP): crash-safe, resumable, reshardable.

Layout under the run's dump folder:

    checkpoints/
      step_00000200/           one complete checkpoint
        .metadata, *.distcp    DCP: model, optimizer, trainer state (step, scheduler, sampler)
        rng_rank{r}.pt         each rank's RNG states (rank-local, so not in DCP; tensors and
                               plain values, read with weights_only=True)
        recipe.toml            the merged recipe that produced it
        meta.json              step, time, whether it holds optimizer state, whether finite
        manifest.json          size and sha256 of every file above (manifest.py)
        COMPLETE               written last: a folder without it is never loaded
      .tmp_step_00000300/      a save in progress (or one a crash interrupted)

A save writes everything into a `.tmp_*` folder, writes the `COMPLETE` marker, then renames
the folder into place (atomic on one filesystem). A crash at any moment leaves the previous
checkpoints untouched and at worst a stray `.tmp_*` folder, which the next save removes.

Loading verifies the manifest first: resume (`latest()`) skips, with one line each, newer
checkpoints that fail and takes the newest good one; a checkpoint named explicitly that
fails is a CheckpointError. Nothing is unpickled beyond DCP's own index classes
(dcp_io.py).

Pruning keeps the `keep_latest` most recent checkpoints, where this run's saves are the
most recent (in the order it made them) and checkpoints already in the folder rank after
them, newest step first; so a run started with `auto_resume = false` in a used folder never
deletes what it just wrote. The most recent checkpoint saved with `finite=True` is never
pruned, whatever came after it.

`load_model_state(path)` gives the full, unsharded model state dict of a checkpoint for code
that only wants weights (the entropy patcher, eval, export); it also reads plain `.pt`
state dicts (the bundled entropy model is one).
"""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path
from typing import Callable

import torch
import torch.distributed.checkpoint as dcp
from torch import nn
from torch.distributed.checkpoint.api import CheckpointException
from torch.distributed.checkpoint.state_dict import (
    get_model_state_dict,
    get_optimizer_state_dict,
    set_model_state_dict,
    StateDictOptions,
    set_optimizer_state_dict,
)

from bltx.checkpoint import manifest
from bltx.checkpoint.dcp_io import load_state, quiet_dcp, save_failure
from bltx.checkpoint.rng_state import load_rng, save_rng
from bltx.checkpoint.weights import (
    MARKER,
    checkpoint_problem,
    complete_checkpoints,
    find_checkpoint,
    load_model_state,
    newest_good_checkpoint,
    saved_tensor_shapes,
    step_dir_name,
    warn,
)
from bltx.errors import CheckpointError

META = "meta.json"
# Optimizer state keyed by parameter name, never by param-group index: the optimizer's
# groups follow the launch layout (bltx/train/optim.py), and a checkpoint must load on
# another layout (2 FSDP ranks -> 1 process, 1 process -> TP).
PER_PARAMETER = StateDictOptions(flatten_optimizer_state_dict=True)


def check_compatible(ckpt: Path, model_state: dict[str, torch.Tensor]) -> None:
    """CheckpointError (one line) unless the checkpoint holds exactly this model's tensors."""
    saved = saved_tensor_shapes(ckpt)
    missing = [k for k in model_state if k not in saved]
    unexpected = [k for k in saved if k not in model_state]
    wrong = [
        (k, tuple(saved[k][0]), tuple(v.shape)) for k, v in model_state.items()
        if k in saved and tuple(saved[k][0]) != tuple(v.shape)
    ]
    if not (missing or unexpected or wrong):
        return
    details = []
    if wrong:
        k, s, m = wrong[0]
        details.append(f"{len(wrong)} shape mismatches (e.g. '{k}' saved {list(s)}, model {list(m)})")
    if missing:
        details.append(f"{len(missing)} tensors missing (e.g. '{missing[0]}')")
    if unexpected:
        details.append(f"{len(unexpected)} unexpected tensors (e.g. '{unexpected[0]}')")
    raise CheckpointError(
        f"checkpoint {ckpt} is from another model: {'; '.join(details)}; "
        f"load it with the model settings it was saved with (see its recipe.toml)"
    )


def read_meta(ckpt: Path) -> dict:
    """A checkpoint's meta.json ({} for one without); CheckpointError if it is garbage."""
    path = ckpt / META
    if not path.is_file():
        return {}
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise CheckpointError(f"cannot read {path}: {exc}; use another checkpoint") from None
    if not isinstance(meta, dict):
        raise CheckpointError(f"{path} does not hold a JSON object; use another checkpoint")
    return meta


class CheckpointManager:
    """Saves and loads training checkpoints in `dump_dir/checkpoints` (see module docstring).
    `log` receives one-line notices (a checkpoint skipped for failing verification, ...)."""

    def __init__(self, dump_dir: Path, keep_latest: int = 2, rank: int = 0, barrier=lambda: None,
                 log: Callable[[str], None] | None = None):
        self.folder = Path(dump_dir) / "checkpoints"
        self.keep_latest = max(1, keep_latest)
        self.rank = rank
        self.barrier = barrier
        self.log = log or warn
        self.saved: list[Path] = []  # this run's saves, oldest first

    def save(self, step: int, model: nn.Module, optimizer: torch.optim.Optimizer | None,
             trainer_state: dict, recipe_toml: str = "", finite: bool = True) -> Path:
        """Save atomically; `finite=False` marks a state with non-finite loss or weights
        (kept out of "the newest finite checkpoint", which pruning never deletes)."""
        final = self.folder / step_dir_name(step)
        tmp = self.folder / f".tmp_{final.name}"
        if self.rank == 0:
            self.folder.mkdir(parents=True, exist_ok=True)
            if tmp.exists():
                shutil.rmtree(tmp)
            tmp.mkdir()
        self.barrier()
        state = {"model": get_model_state_dict(model), "trainer": trainer_state}
        if optimizer is not None:
            state["optimizer"] = get_optimizer_state_dict(model, optimizer, options=PER_PARAMETER)
        try:
            with quiet_dcp():
                dcp.save(state, checkpoint_id=str(tmp))
            save_rng(tmp / f"rng_rank{self.rank}.pt")
            self.barrier()
            if self.rank == 0:
                if recipe_toml:
                    (tmp / "recipe.toml").write_text(recipe_toml + "\n", encoding="utf-8")
                meta = {"step": step, "time": time.time(), "has_optimizer": optimizer is not None,
                        "finite": bool(finite)}
                (tmp / META).write_text(json.dumps(meta) + "\n")
                manifest.write_manifest(tmp, step)  # every rank's files are in by the barrier
                _write_synced(tmp / MARKER, f"{step}\n")
                self._install(tmp, final)
        # CheckpointException is a BaseException (disk full, or a rank interrupted); torch.save
        # reports a short write as a RuntimeError. The partial folder goes at once: left on a
        # full disk it would keep the disk full for the resume.
        except (CheckpointException, OSError, RuntimeError) as exc:
            shutil.rmtree(tmp, ignore_errors=True)
            raise save_failure(exc, final) from None
        if final in self.saved:
            self.saved.remove(final)
        self.saved.append(final)
        if self.rank == 0:
            self._prune()
        self.barrier()
        return final

    def _install(self, tmp: Path, final: Path) -> None:
        # Re-saving a step that exists (a resumed run reaching it again): move the old one
        # aside first, so there is never a moment with no complete copy of the step.
        old = None
        if final.exists():
            old = final.with_name(f".old_{final.name}")
            if old.exists():
                shutil.rmtree(old)
            final.rename(old)
        tmp.rename(final)
        _fsync_dir(self.folder)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)

    def _prune(self) -> None:
        found = [path for _, path in complete_checkpoints(self.folder)]
        # Most recent first: this run's saves (newest first), then older ones (highest step first).
        mine = [p for p in reversed(self.saved) if p in found]
        order = mine + [p for p in reversed(found) if p not in mine]
        keep = set(order[: self.keep_latest])
        newest_finite = next((p for p in order if _is_finite(p)), None)
        if newest_finite is not None:
            keep.add(newest_finite)
        for path in order:
            if path not in keep:
                shutil.rmtree(path, ignore_errors=True)
        # Leftovers of interrupted saves (none can be in progress: saves are sequential).
        for child in self.folder.iterdir():
            if child.name.startswith(".tmp_") or child.name.startswith(".old_"):
                shutil.rmtree(child, ignore_errors=True)

    def load_newest(self, model: nn.Module, optimizer: torch.optim.Optimizer | None, trainer_state: dict,
                    accept: Callable[[dict, Path], object] = lambda state, path: None) -> tuple[Path, dict] | None:
        """Resume: load the newest checkpoint that passes every check (verification, with or
        without a manifest; `"finite"`; the load itself; `accept(trainer_state, path)`),
        warning once for each newer one skipped. None when the folder holds no complete
        checkpoint; CheckpointError when none passes.

        Trying the load is the last check because only it reads every byte a legacy
        checkpoint (no manifest) holds; a failed attempt leaves nothing behind, since the
        next one overwrites every tensor of the model and optimizer. Every rank reads the
        same files and takes the same decision."""
        found = complete_checkpoints(self.folder)
        failures: list[str] = []
        for _, ckpt in reversed(found):
            try:
                reason = checkpoint_problem(ckpt, self.log)
                if reason is not None:
                    raise CheckpointError(reason)
                if not _is_finite(ckpt):
                    raise CheckpointError(f"checkpoint {ckpt} holds non-finite weights or optimizer state")
                state = self.load(ckpt, model, optimizer, trainer_state)
                accept(state, ckpt)
            except CheckpointError as exc:
                failures.append(str(exc))
                continue
            for text in failures:
                self.log(f"{text}; falling back to {ckpt.name}")
            return ckpt, state
        if failures:
            raise CheckpointError(
                f"none of the {len(found)} checkpoints in {self.folder} can be resumed (newest: "
                f"{failures[0]}); move them away or use a fresh job.dump_dir"
            )
        return None

    def latest(self) -> Path | None:
        """The newest checkpoint that passes verification (see module docstring); None when
        there is none at all, CheckpointError when there are some but none verifies."""
        return newest_good_checkpoint(self.folder, self.log)

    def load(self, path: Path, model: nn.Module, optimizer: torch.optim.Optimizer | None,
             trainer_state: dict) -> dict:
        """Load `path` into model (+ optimizer) in place; returns the trainer state filled
        from the checkpoint (`trainer_state` gives its structure). `path` is verified
        first: CheckpointError (one line) if it fails."""
        path = find_checkpoint(path, self.log)
        model_state = get_model_state_dict(model)
        check_compatible(path, model_state)
        state = {"model": model_state, "trainer": trainer_state}
        if optimizer is not None:
            if not read_meta(path).get("has_optimizer", True):
                raise CheckpointError(f"checkpoint {path} has no optimizer state; it cannot resume training")
            state["optimizer"] = get_optimizer_state_dict(model, optimizer, options=PER_PARAMETER)
        load_state(state, path)
        set_model_state_dict(model, state["model"])
        if optimizer is not None:
            set_optimizer_state_dict(model, optimizer, state["optimizer"], options=PER_PARAMETER)
        rng = path / f"rng_rank{self.rank}.pt"
        if rng.is_file():
            self._restore_rng(path, rng)
        return state["trainer"]

    def _restore_rng(self, ckpt: Path, rng: Path) -> None:
        if manifest.has_manifest(ckpt):
            load_rng(rng)
            return
        try:  # a legacy checkpoint's RNG file is a full pickle, which bltx no longer reads
            load_rng(rng)
        except CheckpointError:
            self.log(f"not restoring RNG state from {rng} (older format); the resumed run "
                     f"continues but is not bit-exact")


def _is_finite(ckpt: Path) -> bool:
    try:
        return read_meta(ckpt).get("finite", True) is True
    except CheckpointError:
        return False


def export_model_state(path: str | os.PathLike, out: str | os.PathLike, dtype: str = "") -> Path:
    """Write a checkpoint's model weights as one plain `.pt` state dict (optionally cast,
    e.g. to bfloat16 to halve a bundled file)."""
    state = load_model_state(path)
    if dtype:
        cast = getattr(torch, dtype)
        state = {k: v.to(cast) if v.is_floating_point() else v for k, v in state.items()}
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    torch.save(state, out)
    return out


def _write_synced(path: Path, text: str) -> None:
    with open(path, "w") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def main(argv: list[str] | None = None) -> int:
    """`python -m bltx.checkpoint export CKPT OUT.pt [--dtype bfloat16]`."""
    import argparse
    import sys

    parser = argparse.ArgumentParser(prog="python -m bltx.checkpoint")
    sub = parser.add_subparsers(dest="cmd", required=True)
    ex = sub.add_parser("export", help="write a checkpoint's model weights as a .pt state dict")
    ex.add_argument("checkpoint")
    ex.add_argument("out")
    ex.add_argument("--dtype", default="", help="cast floating tensors, e.g. bfloat16")
    args = parser.parse_args(argv)
    try:
        out = export_model_state(args.checkpoint, args.out, args.dtype)
    except CheckpointError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"wrote {out} ({out.stat().st_size / 1024:.0f} KiB)")
    return 0
