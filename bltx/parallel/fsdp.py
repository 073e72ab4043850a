"""FSDP2 (`fully_shard`): each block is its own shard group, then the root takes the rest.

Per-block groups bound the memory of gathered parameters to about one block (two with
prefetch). Mixed precision comes from `training.dtype`: bfloat16 gathers and computes in
bf16 but keeps fp32 master weights and reduces gradients in fp32, so the optimizer
update and the cross-rank averaging stay exact.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.distributed.fsdp import MixedPrecisionPolicy, fully_shard

from bltx.precision import resolved_dtype


def mixed_precision(dtype: str, device_type: str | None = None) -> MixedPrecisionPolicy:
    """MixedPrecisionPolicy for a recipe's training.dtype ("auto" resolved for device_type)."""
    if resolved_dtype(dtype, device_type) == "bfloat16":
        return MixedPrecisionPolicy(param_dtype=torch.bfloat16, reduce_dtype=torch.float32)
    return MixedPrecisionPolicy()


def apply_fsdp(model: nn.Module, blocks: list[str], dp_mesh, dtype: str = "float32",
               replicated: list[str] = ()) -> None:
    """fully_shard each of `blocks` (fqns, forward order), then the root; FSDP leaves the
    parameters of `replicated` modules alone (frozen helpers kept whole, or tables that
    are already row-sharded)."""
    mp = mixed_precision(dtype, None if dp_mesh is None else dp_mesh.device_type)
    ignored = {p for fqn in replicated for p in model.get_submodule(fqn).parameters()}
    for i, fqn in enumerate(blocks):
        # The last block's parameters are needed again at once by backward: keeping them
        # gathered after forward saves one all-gather.
        unit = model.get_submodule(fqn)
        own_ignored = {p for p in unit.parameters() if p in ignored}
        fully_shard(
            unit, mesh=dp_mesh, mp_policy=mp,
            reshard_after_forward=i < len(blocks) - 1, ignored_params=own_ignored or None,
        )
    # The root's outputs (logits) come back in fp32 so the loss is computed accurately.
    root_mp = MixedPrecisionPolicy(
        param_dtype=mp.param_dtype, reduce_dtype=mp.reduce_dtype,
        output_dtype=torch.float32 if mp.param_dtype is not None else None,
    )
    fully_shard(model, mesh=dp_mesh, mp_policy=root_mp, ignored_params=ignored or None)
