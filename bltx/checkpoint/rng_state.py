"""Each rank's RNG states (torch, CUDA, numpy, Python) as tensors and plain values.

The file is written with `torch.save` and read with `torch.load(weights_only=True)`: it
holds only tensors, ints, floats, strings and lists, so reading a crafted file cannot run
code (a pickled `random.getstate()` tuple or numpy array would need full unpickling).
"""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import torch

from bltx.errors import CheckpointError

FORMAT = 1


def capture_rng() -> dict:
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    version, py_state, gauss_next = random.getstate()
    state = {
        "format": FORMAT,
        "torch": torch.get_rng_state(),
        "numpy": {"kind": str(kind), "keys": torch.from_numpy(np.asarray(keys, dtype=np.int64)),
                  "pos": int(pos), "has_gauss": int(has_gauss), "cached_gaussian": float(cached)},
        "python": {"version": int(version), "state": list(py_state), "gauss_next": gauss_next},
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng(state: dict) -> None:
    n = state["numpy"]
    p = state["python"]
    torch.set_rng_state(state["torch"])
    np.random.set_state((n["kind"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["cached_gaussian"]))
    random.setstate((p["version"], tuple(p["state"]), p["gauss_next"]))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_rng(path: Path) -> None:
    torch.save(capture_rng(), path)


def load_rng(path: Path) -> None:
    """Restore the RNG states saved in `path`; CheckpointError (one line) if it is not a
    bltx RNG file (truncated, foreign, an older pickled format, or a crafted pickle)."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
        if not isinstance(state, dict) or state.get("format") != FORMAT:
            raise ValueError("not a bltx RNG state")
        restore_rng(state)
    except Exception:  # torch's own message suggests weights_only=False: not advice to pass on
        raise CheckpointError(
            f"cannot restore RNG state from {path}: not a bltx RNG file (truncated, corrupt, "
            f"from an older bltx, or crafted); use another checkpoint"
        ) from None
