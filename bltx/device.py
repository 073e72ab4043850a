"""Which torch device a process uses, from `job.device` and torchrun's LOCAL_RANK.

Shared by the single-process World (train/), the parallel World (parallel/) and the tasks.
"""

from __future__ import annotations

import torch

from bltx.errors import ConfigError


def pick_device(device: str = "auto", local_rank: int = 0) -> torch.device:
    """`auto` -> cuda:LOCAL_RANK when a GPU is present, else cpu; anything else as given."""
    if device == "auto":
        return torch.device(f"cuda:{local_rank}") if torch.cuda.is_available() else torch.device("cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"job.device = '{device}' but no CUDA device is available; use 'auto' or 'cpu'")
    if device == "cuda":
        return torch.device(f"cuda:{local_rank}")
    return torch.device(device)
