"""Tensor parallelism for Llama-style blocks (torchtitan's plan).

Attention: wq/wk/wv column-parallel (each rank owns n_heads/tp query heads and
n_kv_heads/tp key/value heads), wo row-parallel. Feed-forward: w1/w3 column-parallel, w2
row-parallel. One all-reduce (or reduce-scatter with sequence parallel) per sub-layer.

Without sequence parallel, a block takes and returns ordinary tensors replicated across
the TP ranks, so it drops into any model unchanged. With sequence parallel the residual
stream between blocks is sharded on the sequence dim and the norms run on that shard
(SequenceParallel); the model's plan must then shard the stream where it enters the first
block and gather it after the last (`ParallelPlan.tp_root`).
"""

from __future__ import annotations

from torch import nn
from torch.distributed.tensor import DTensor, Replicate, Shard
from torch.distributed.tensor.parallel import (
    ColwiseParallel,
    ParallelStyle,
    RowwiseParallel,
    SequenceParallel,
    parallelize_module,
)

from bltx.errors import ConfigError
from bltx.parallel.plans import llama_block_missing


def check_heads(n_heads: int, n_kv_heads: int, tp: int, where: str = "model") -> None:
    """One-line ConfigError unless tp divides both head counts (heads are the TP unit)."""
    if n_heads % tp or n_kv_heads % tp:
        raise ConfigError(
            f"parallelism.tp = {tp} must divide the attention heads of {where} "
            f"(n_heads = {n_heads}, n_kv_heads = {n_kv_heads}); choose a tp that divides both"
        )


class GatherSequence(ParallelStyle):
    """Pre-forward: turn the module's first positional input from sequence-sharded
    (Shard(1)) to replicated, leaving the other inputs (masks, rope, backends) alone.

    PrepareModuleInput needs one layout per positional input; blocks of different models
    take different extra arguments, so this only touches the first one.
    """

    def _apply(self, module: nn.Module, device_mesh) -> nn.Module:
        def hook(mod, args):
            x = args[0]
            if not isinstance(x, DTensor):
                x = DTensor.from_local(x, device_mesh, (Shard(1),), run_check=False)
            return (x.redistribute(device_mesh, (Replicate(),)), *args[1:])

        module.register_forward_pre_hook(hook)
        return module


def _styles(linear: nn.Module, float8_tensorwise: bool):
    """(colwise, rowwise) style classes for a linear: float8 all-gather variants only for
    layers converted to Float8Linear with tensorwise scaling (torchtitan does the same)."""
    if float8_tensorwise:
        from torchao.float8.float8_linear import Float8Linear

        if isinstance(linear, Float8Linear):
            from torchao.float8.float8_tensor_parallel import (
                Float8ColwiseParallel,
                Float8RowwiseParallel,
            )

            return Float8ColwiseParallel, Float8RowwiseParallel
    return ColwiseParallel, RowwiseParallel


def block_tp_plan(block: nn.Module, sequence_parallel: bool, float8_tensorwise: bool) -> dict:
    """parallelize_module plan (relative fqn -> style) for one Llama-style block."""
    out_layout = Shard(1) if sequence_parallel else Replicate()
    plan = {}
    for sub, col_names, row_name in (
        ("attention", ("wq", "wk", "wv"), "wo"),
        ("feed_forward", ("w1", "w3"), "w2"),
    ):
        parent = getattr(block, sub)
        for name in col_names:
            col, _ = _styles(getattr(parent, name), float8_tensorwise)
            plan[f"{sub}.{name}"] = col()
        _, row = _styles(getattr(parent, row_name), float8_tensorwise)
        plan[f"{sub}.{row_name}"] = row(output_layouts=out_layout)
    if sequence_parallel:
        for norm in ("attention_norm", "ffn_norm"):
            if not hasattr(block, norm):
                raise ConfigError(
                    f"sequence parallel needs block norms named attention_norm/ffn_norm; "
                    f"{type(block).__name__} has no '{norm}'"
                )
            plan[norm] = SequenceParallel()
        plan["attention"] = GatherSequence()
        plan["feed_forward"] = GatherSequence()
    return plan


def apply_tp_block(block: nn.Module, tp_mesh, *, sequence_parallel: bool = False,
                   float8_tensorwise: bool = False, where: str = "block") -> None:
    """Tensor-parallelize one Llama-style block in place."""
    lacking = llama_block_missing(block)
    if lacking:
        raise ConfigError(
            f"{where}: {type(block).__name__} is listed for tensor parallelism but is not a "
            f"Llama-style block (bltx/protocols.py tp_attention/tp_feed_forward); missing: {', '.join(lacking)}"
        )
    tp = tp_mesh.size()
    attn = block.attention
    check_heads(attn.n_heads, attn.n_kv_heads, tp, where)
    parallelize_module(block, tp_mesh, block_tp_plan(block, sequence_parallel, float8_tensorwise))
    # The attention reshapes with its own head counts; after the column split each rank
    # holds only its share of the heads (head_dim is unchanged).
    attn.n_heads //= tp
    attn.n_kv_heads //= tp


def apply_tp(model: nn.Module, plan, tp_mesh, *, float8_tensorwise: bool = False) -> None:
    """Apply the model's TP plan: every `plan.tp_blocks` block, then the root boundaries."""
    if not plan.tp_blocks:
        raise ConfigError(
            f"{type(model).__name__} has no tensor-parallel plan (no Llama-style blocks); "
            f"set parallelism.tp = 1"
        )
    if plan.sequence_parallel and plan.tp_root is None:
        raise ConfigError(f"{type(model).__name__}: sequence parallel needs a tp_root in its plan")
    for fqn in plan.tp_blocks:
        apply_tp_block(
            model.get_submodule(fqn), tp_mesh,
            sequence_parallel=plan.sequence_parallel,
            float8_tensorwise=float8_tensorwise, where=fqn,
        )
    if plan.sequence_parallel and plan.tp_root is not None:
        plan.tp_root(model, tp_mesh, float8_tensorwise)
