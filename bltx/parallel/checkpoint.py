"""Sharded checkpoints that load on any mesh (torch.distributed.checkpoint).

    save_sharded(path, model, optimizer, extra={"step": 100})     # every rank calls it
    extra = load_sharded(path, model, optimizer)                   # on any other mesh

State dicts come from `get_model_state_dict` / `get_optimizer_state_dict`, which key every
tensor by its plain parameter name (FSDP, TP, compile and checkpoint wrappers removed) and
hold DTensor shards where the model is sharded. DCP records the global shape and offsets
of each shard, so loading on another mesh (2 FSDP ranks -> 1 process, 1 -> 2, FSDP -> TP)
reads exactly the slices each new rank owns. Works without a process group, too.

`extra` (step, scheduler, sampler position, ...) is small replicated state: rank 0 pickles
it next to the DCP files.
"""

from __future__ import annotations

import os
import warnings
from contextlib import contextmanager
from pathlib import Path

import torch
import torch.distributed as dist
import torch.distributed.checkpoint as dcp
from torch.distributed.checkpoint.api import CheckpointException
from torch import nn
from torch.distributed.checkpoint.state_dict import (
    StateDictOptions,
    get_model_state_dict,
    get_optimizer_state_dict,
    set_model_state_dict,
    set_optimizer_state_dict,
)

from bltx.errors import CheckpointError

EXTRA_FILE = "extra.pt"


@contextmanager
def _quiet():
    # Without a process group DCP warns that it assumes one process: that is the intent.
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*torch.distributed.*")
        warnings.filterwarnings("ignore", category=FutureWarning)
        yield


def _rank() -> int:
    return dist.get_rank() if dist.is_initialized() else 0


def _barrier() -> None:
    if dist.is_initialized():
        dist.barrier()


def state_dicts(model: nn.Module, optimizer: torch.optim.Optimizer | None = None) -> dict:
    """{"model": ..., "optim": ...} with plain names and (where sharded) DTensor values."""
    with _quiet():
        state = {"model": get_model_state_dict(model)}
        if optimizer is not None:
            state["optim"] = get_optimizer_state_dict(model, optimizer)
    return state


def save_sharded(path: str | os.PathLike, model: nn.Module,
                 optimizer: torch.optim.Optimizer | None = None, extra: dict | None = None) -> Path:
    """Every rank writes its shards to folder `path`; rank 0 also writes `extra`."""
    path = Path(path)
    if _rank() == 0:
        path.mkdir(parents=True, exist_ok=True)
    _barrier()
    with _quiet():
        dcp.save(state_dicts(model, optimizer), checkpoint_id=str(path))
    if _rank() == 0:
        torch.save(extra or {}, path / EXTRA_FILE)
    _barrier()
    return path


def _cause(exc: BaseException) -> str:
    """The informative line of a (possibly multi-rank, traceback-carrying) DCP error."""
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
    errors = [ln for ln in lines if "Error: " in ln]
    return errors[-1] if errors else (lines[0] if lines else type(exc).__name__)


def load_sharded(path: str | os.PathLike, model: nn.Module,
                 optimizer: torch.optim.Optimizer | None = None) -> dict:
    """Load a save_sharded checkpoint into `model` (and `optimizer`), whatever mesh either
    was on; returns the saved `extra`. CheckpointError (one line) if it does not fit."""
    path = Path(path)
    if not (path / ".metadata").is_file():
        raise CheckpointError(f"no sharded checkpoint at {path} (missing .metadata)")
    state = state_dicts(model, optimizer)
    try:
        with _quiet():
            dcp.load(state, checkpoint_id=str(path))
    except (Exception, CheckpointException) as exc:  # the latter is a BaseException
        raise CheckpointError(f"cannot load checkpoint {path} into this model: {_cause(exc)}") from None
    with _quiet():
        set_model_state_dict(model, state["model"])
        if optimizer is not None:
            set_optimizer_state_dict(model, optimizer, state["optim"])
    extra_file = path / EXTRA_FILE
    return torch.load(extra_file, weights_only=False) if extra_file.is_file() else {}


def load_full_state(model: nn.Module, full_state: dict) -> None:
    """Load an unsharded state dict (e.g. converted HF weights, a reference model) into a
    model on any mesh: each rank keeps the slices it owns."""
    with _quiet():
        set_model_state_dict(model, full_state, options=StateDictOptions(full_state_dict=True))


def full_state(model: nn.Module) -> dict:
    """The unsharded model state dict on every rank, as CPU tensors (for tests, export)."""
    # cpu_offload=True would leave every rank but 0 with an empty dict; move by hand.
    with _quiet():
        state = get_model_state_dict(model, options=StateDictOptions(full_state_dict=True))
    return {k: v.detach().cpu() if isinstance(v, torch.Tensor) else v for k, v in state.items()}
