"""Checkpoint reading and writing, in one package (core layer: it imports only core modules,
so the patcher, the model, the trainer and the tasks can all use it).

    manager.py        CheckpointManager: atomic save, verified resume, pruning; export
    weights.py        reading weights: checkpoint folders, `.pt` files, `bltx:NAME` bundles
    manifest.py       size and sha256 of every file of a checkpoint, checked before loading
    dcp_io.py         DCP reads that never run code from the folder (safe unpickling)
    rng_state.py      each rank's RNG states, saved and restored
    trainer_state.py  the trainer's part of a checkpoint, checked before it is applied
    resume_check.py   what changed between a checkpoint's recipe and the resuming one
    finite.py         whether a training state holds only finite tensors

Callers import the entry points from here:

    from bltx.checkpoint import CheckpointManager, find_checkpoint, load_model_state

`python -m bltx.checkpoint export CKPT OUT.pt [--dtype bfloat16]` writes a
checkpoint's weights as one `.pt` state dict.
"""

from bltx.checkpoint.finite import local_state_finite
from bltx.checkpoint.manager import CheckpointManager, check_compatible, export_model_state, read_meta
from bltx.checkpoint.resume_check import check_resume
from bltx.checkpoint.trainer_state import parse_trainer_state
from bltx.checkpoint.weights import find_checkpoint, load_exactly, load_model_state, saved_tensor_shapes

__all__ = [
    "CheckpointManager",
    "check_compatible",
    "check_resume",
    "export_model_state",
    "find_checkpoint",
    "load_exactly",
    "load_model_state",
    "local_state_finite",
    "parse_trainer_state",
    "read_meta",
    "saved_tensor_shapes",
]
