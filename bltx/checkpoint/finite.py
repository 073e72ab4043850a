"""Is a training state finite? Asked before every save, so `meta.json`'s `"finite"` says
what the files hold, not what the last step's loss was.

In `training.on_nonfinite = "skip"` mode a step whose gradient norm is finite can still
write NaN/inf into the weights or the Adam moments; every later step is then skipped and
the loss looks "handled". Pruning protects the newest *finite* checkpoint, so that flag
must come from the tensors themselves: model parameters and buffers, and every tensor of
the optimizer state.
"""

from __future__ import annotations

import torch
from torch import nn


def _local(t: torch.Tensor) -> torch.Tensor:
    # DTensor shards: each rank checks its own part; the caller combines the ranks.
    return t.to_local() if hasattr(t, "to_local") else t


@torch.no_grad()
def local_state_finite(model: nn.Module, optimizer: torch.optim.Optimizer | None) -> bool:
    """True when this rank's part of the weights and optimizer state has no NaN/inf."""
    tensors = [*model.parameters(), *model.buffers()]
    if optimizer is not None:
        tensors += [v for state in optimizer.state.values() for v in state.values() if torch.is_tensor(v)]
    floats = [t for t in map(_local, tensors) if t.is_floating_point() and t.numel()]
    if not floats:
        return True
    # One reduction per tensor on the device, one host sync for the whole state.
    flags = torch.stack([torch.isfinite(t).all() for t in floats])
    return bool(flags.all())
