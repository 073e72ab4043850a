"""Activation checkpointing per block: none, full, or selective.

full: a block keeps only its input; its whole forward reruns in backward.
selective (op-level): keep the outputs of the expensive ops (matmuls, attention) and
recompute the cheap elementwise ones (norms, activations, rotary, residual adds), which
frees most activation memory for a small recompute cost.

Blocks are wrapped with `checkpoint_wrapper` and put back under the same name; the
wrapper's extra path component is stripped by torch.distributed.checkpoint's state-dict
helpers, so checkpoints keep the plain parameter names.
"""

from __future__ import annotations

import torch
from torch import nn

# Ops whose outputs selective AC saves: the compute-bound ones.
_SAVE_OPS = {
    torch.ops.aten.mm.default,
    torch.ops.aten.addmm.default,
    torch.ops.aten.bmm.default,
    torch.ops.aten._scaled_mm.default,
    torch.ops.aten._scaled_dot_product_efficient_attention.default,
    torch.ops.aten._scaled_dot_product_flash_attention.default,
    torch.ops.aten._scaled_dot_product_flash_attention_for_cpu.default,
    torch.ops.aten._scaled_dot_product_cudnn_attention.default,
}


def _selective_context():
    from torch.utils.checkpoint import CheckpointPolicy, create_selective_checkpoint_contexts

    def policy(ctx, op, *args, **kwargs):
        return CheckpointPolicy.MUST_SAVE if op in _SAVE_OPS else CheckpointPolicy.PREFER_RECOMPUTE

    return create_selective_checkpoint_contexts(policy)


def replace_submodule(model: nn.Module, fqn: str, new: nn.Module) -> None:
    parent_fqn, _, name = fqn.rpartition(".")
    parent = model.get_submodule(parent_fqn) if parent_fqn else model
    parent.register_module(name, new)


def apply_ac(model: nn.Module, blocks: list[str], mode: str) -> None:
    """Wrap each block (by fqn) in place according to `mode`."""
    if mode == "none":
        return
    if mode not in ("full", "selective"):
        raise ValueError(f"unknown activation checkpoint mode {mode!r}")
    from torch.distributed.algorithms._checkpoint.checkpoint_wrapper import checkpoint_wrapper

    for fqn in blocks:
        block = model.get_submodule(fqn)
        if mode == "full":
            wrapped = checkpoint_wrapper(block, preserve_rng_state=False)
        else:
            wrapped = checkpoint_wrapper(block, preserve_rng_state=False, context_fn=_selective_context)
        replace_submodule(model, fqn, wrapped)
