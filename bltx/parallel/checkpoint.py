"""Whole (unsharded) model state on any mesh: for tests, export and converted weights.

Training checkpoints (sharded, reshardable, verified) are the trainer's: see
bltx/train/checkpoint.py. These two helpers move a full state dict in and out of a model
whatever its layout (FSDP, TP, both, or none): each rank keeps the slices it owns.
"""

from __future__ import annotations

import warnings
from contextlib import contextmanager

from torch import nn
from torch.distributed.checkpoint.state_dict import (
    StateDictOptions,
    get_model_state_dict,
    set_model_state_dict,
)


@contextmanager
def _quiet():
    # Without a process group the state-dict helpers warn that they assume one process.
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*torch.distributed.*")
        warnings.filterwarnings("ignore", category=FutureWarning)
        yield


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
    return {k: v.detach().cpu() if hasattr(v, "detach") else v for k, v in state.items()}
