"""Per-model parallel plans: what the scaling layer must know about a model's structure.

The parallel code never guesses module roles from a model's forward. A model says it by a
`ParallelPlan`: which submodules are the repeated "blocks" (the units of FSDP sharding,
activation checkpointing and per-block compile), which of those are Llama-style blocks
that tensor parallelism may split, and which layers stay in high precision under float8.

A plan is found, in order, from:
  1. `model.parallel_plan()`, the `parallel_plan` capability (bltx/protocols.py), if the
     model class defines it (plugins own their plan);
  2. a planner registered as a "parallel_plan" component under the model's registered
     name, `@register_plan("blt")` (kept beside, not inside, the model: see
     bltx/parallel/blt_plan.py), found through the model's class and its bases;
  3. the default: every child of a ModuleDict/ModuleList named `layers` is a block, and
     blocks with attention.{wq,wk,wv,wo} + feed_forward.{w1,w2,w3} are tensor-parallel.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

from torch import nn

from bltx.protocols import TPAttention, TPFeedForward, has, missing
from bltx.registry import get_registry, register

ATTENTION_LINEARS = ("wq", "wk", "wv", "wo")
FFN_LINEARS = ("w1", "w2", "w3")


@dataclass
class ParallelPlan:
    """What `parallelize` needs to know about one model.

    blocks: fully-qualified names of the repeated blocks, in forward order.
    tp_blocks: the blocks to tensor-parallelize; each must be Llama-style (see
        `is_llama_block`). Empty: the model does not support tp > 1.
    sequence_parallel: blocks receive and return activations sharded on the sequence dim
        (torchtitan's SP); then `tp_root` must shard/unshard at the model's boundaries.
    tp_root: `fn(model, tp_mesh, float8_tensorwise)` parallelizing non-block modules
        (embedding, final norm, output head) when sequence_parallel is on.
    fsdp_units: extra FSDP shard groups that are not blocks (no AC or compile), e.g. big
        embedding tables, so they are gathered only around their own forward instead of
        staying gathered with the root for the whole step.
    replicated: modules FSDP leaves whole on every rank (its `ignored_params`): frozen
        helpers that code calls outside the root forward, like BLT's entropy patcher
        (`model.patch(ids)`); sharded, they would hold only shards outside forward.
    float8_skip: fqn prefixes kept in high precision (output heads, frozen models).
    float8_min_dim: linears with in or out features below this stay high precision; tiny
        GEMMs lose more to the scaling overhead than they gain.
    row_sharded: big nn.Embedding tables looked up row-sharded over the dp shards
        (bltx/parallel/row_sharded.py) instead of being gathered whole by FSDP.
    static_shapes: `fn(model)` called before blocks are compiled one by one: makes the
        eager code around the blocks feed them fixed shapes, so the blocks compile once
        instead of once per shape.
    dp_root: `fn(model, world)` called when there is more than one data-parallel rank:
        lets model code reduce a statistic over the data-parallel ranks (learned chunking's
        batch boundary rate).
    compiled_root: the method `compile.scope = "model"` compiles in place of `forward`,
        for models whose forward begins with host-side work no graph should hold (BLT:
        `forward_patched`, everything after the patcher, with the patch count dynamic).
    """

    blocks: list[str]
    tp_blocks: list[str] = field(default_factory=list)
    sequence_parallel: bool = False
    tp_root: Callable | None = None
    fsdp_units: list[str] = field(default_factory=list)
    replicated: list[str] = field(default_factory=list)
    float8_skip: list[str] = field(default_factory=list)
    float8_min_dim: int = 16
    static_shapes: Callable | None = None
    compiled_root: str | None = None
    dp_root: Callable | None = None
    row_sharded: list[str] = field(default_factory=list)


def register_plan(model_name: str):
    """Decorator: `@register_plan("my_model") def plan(model) -> ParallelPlan`, for the model
    registered as "my_model" (and models subclassing it)."""
    return register("parallel_plan", model_name)


def llama_block_missing(block: nn.Module) -> list[str]:
    """What `block` lacks to be a Llama-style block tensor parallelism may split (the
    TPAttention / TPFeedForward structures, bltx/protocols.py); [] when it is one."""
    children = dict(block.named_children())
    lacking = []
    for part, contract, linears in (("attention", TPAttention, ATTENTION_LINEARS),
                                    ("feed_forward", TPFeedForward, FFN_LINEARS)):
        sub = children.get(part)
        if sub is None:
            lacking.append(part)
            continue
        lacking += [f"{part}.{n}" for n in missing(sub, contract)]
        layers = dict(sub.named_children())
        lacking += [f"{part}.{n} (an nn.Linear)" for n in linears
                    if n in layers and not isinstance(layers[n], nn.Linear)]
    return lacking


def is_llama_block(block: nn.Module) -> bool:
    return not llama_block_missing(block)


def layer_blocks(model: nn.Module, prefix: str = "") -> list[str]:
    """fqns of the children of every ModuleDict/ModuleList named `layers` under `model`."""
    out = []
    for name, module in model.named_modules(prefix=prefix.rstrip(".")):
        if name.split(".")[-1] == "layers" and isinstance(module, (nn.ModuleDict, nn.ModuleList)):
            out.extend(f"{name}.{child}" if name else child for child, _ in module.named_children())
    return out


def default_plan(model: nn.Module) -> ParallelPlan:
    blocks = layer_blocks(model)
    tp = [b for b in blocks if is_llama_block(model.get_submodule(b))]
    return ParallelPlan(blocks=blocks, tp_blocks=tp, float8_skip=["output"])


def plan_for(model: nn.Module) -> ParallelPlan:
    """The model's ParallelPlan (see module docstring for the lookup order)."""
    if has(model, "parallel_plan"):
        return model.parallel_plan()
    models, planners = get_registry("model"), get_registry("parallel_plan")
    names = {models.get(name): name for name in models.names()}
    for cls in type(model).__mro__:
        if cls in names and names[cls] in planners:
            return planners.get(names[cls])(model)
    return default_plan(model)
