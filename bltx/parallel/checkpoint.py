"""Whole (unsharded) model state on any mesh: for tests, export and converted weights.

Training checkpoints (sharded, reshardable, verified) are the trainer's: see
bltx/train/checkpoint.py. These two helpers move a full state dict in and out of a model
whatever its layout (FSDP, TP, both, or none): each rank keeps the slices it owns.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.distributed.checkpoint.state_dict import (
    StateDictOptions,
    get_model_state_dict,
    set_model_state_dict,
)

from bltx.dcp_io import quiet_dcp


def load_full_state(model: nn.Module, full_state: dict) -> None:
    """Load an unsharded state dict (e.g. converted HF weights, a reference model) into a
    model on any mesh: each rank keeps the slices it owns."""
    with quiet_dcp():
        set_model_state_dict(model, full_state, options=StateDictOptions(full_state_dict=True))


def full_state(model: nn.Module) -> dict:
    """The unsharded model state dict on every rank, as CPU tensors (for tests, export)."""
    # cpu_offload=True would leave every rank but 0 with an empty dict; move by hand.
    with quiet_dcp():
        state = get_model_state_dict(model, options=StateDictOptions(full_state_dict=True))
    return {k: v.detach().cpu() if isinstance(v, torch.Tensor) else v for k, v in state.items()}
