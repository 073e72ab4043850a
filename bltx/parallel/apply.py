"""`parallelize(model, recipe, world)`: the scaling steps in torchtitan's order.

    with torch.device("meta"):
        model = bltx.build_model(recipe)
    model = parallelize(model, recipe, world)     # float8 -> TP -> AC -> compile -> FSDP
    materialize(model, world.device)              # to_empty + init_weights, on each shard
    optimizer = AdamW(model.parameters(), ...)    # after: FSDP/TP replaced the parameters

Why this order: float8 swaps module classes, so it comes before anything that wraps or
shards those modules; TP shards parameters into DTensors that FSDP then shards again on
the data-parallel mesh (2-D); AC wraps the TP'd blocks; compile sees the final block
(float8 casts, TP collectives, recompute) as one graph; FSDP comes last so its hooks sit
outside the compiled graphs. Every step is optional and driven by the recipe.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from bltx.errors import ConfigError
from bltx.parallel.ac import apply_ac
from bltx.parallel.compile import apply_compile
from bltx.parallel.float8 import apply_float8
from bltx.parallel.fsdp import apply_fsdp
from bltx.parallel.plans import ParallelPlan, plan_for
from bltx.parallel.tp import apply_tp, check_heads
from bltx.parallel.world import as_parallel_world


@dataclass
class ParallelSummary:
    """What parallelize did, for logs and --dry-run."""

    degrees: str = ""
    float8: list[str] = field(default_factory=list)
    tp_blocks: list[str] = field(default_factory=list)
    ac: str = "none"
    compiled: int = 0
    fsdp_blocks: int = 0

    def lines(self) -> list[str]:
        return [
            f"parallel: {self.degrees}",
            f"float8 linears: {len(self.float8)}",
            f"tensor-parallel blocks: {len(self.tp_blocks)}",
            f"activation checkpointing: {self.ac}",
            f"compiled blocks: {self.compiled}",
            f"fsdp shard groups: {self.fsdp_blocks} units + root" if self.fsdp_blocks else "fsdp: off",
        ]


def check_plan(model: nn.Module, plan: ParallelPlan, tp: int) -> None:
    """Fail early, in one line, on degrees the model cannot take (before any wrapping)."""
    if tp == 1:
        return
    if not plan.tp_blocks:
        raise ConfigError(
            f"{type(model).__name__} has no tensor-parallel plan (no Llama-style blocks); "
            f"set parallelism.tp = 1"
        )
    for fqn in plan.tp_blocks:
        attn = model.get_submodule(fqn).attention
        check_heads(attn.n_heads, getattr(attn, "n_kv_heads", None) or attn.n_heads, tp, fqn)


def parallelize(model: nn.Module, recipe, world, plan: ParallelPlan | None = None) -> nn.Module:
    """Apply float8, tensor parallel, activation checkpointing, compile and FSDP2 to `model`
    in place, as `recipe` asks and `world` allows; returns `model`.

    `world` is a bltx.parallel.World (required for tp > 1), or any object with rank,
    world_size, local_rank and device (pure data parallel: its mesh is built here).

    Build the model on the meta device first for big models; call `materialize` after.
    The summary of what was done is left in `model.parallel_summary`.
    """
    world = as_parallel_world(world, recipe.parallelism)
    plan = plan or plan_for(model)
    degrees = world.degrees
    check_plan(model, plan, degrees.tp)
    summary = ParallelSummary(degrees=degrees.describe())

    if recipe.float8.enable:
        summary.float8 = apply_float8(model, recipe.float8.recipe, plan.float8_skip, plan.float8_min_dim)
    if degrees.tp > 1:
        apply_tp(model, plan, world.tp_mesh,
                 float8_tensorwise=recipe.float8.enable and recipe.float8.recipe == "tensorwise")
        summary.tp_blocks = list(plan.tp_blocks)
    mode = recipe.activation_checkpoint.mode
    apply_ac(model, plan.blocks, mode)
    summary.ac = mode
    if recipe.compile.enable:
        apply_compile(model, plan.blocks, recipe.compile.fullgraph)
        summary.compiled = len(plan.blocks)
    if degrees.fsdp:
        units = list(plan.fsdp_units) + list(plan.blocks)
        apply_fsdp(model, units, world.dp_mesh, recipe.training.dtype, plan.replicated)
        summary.fsdp_blocks = len(units)
    model.parallel_summary = summary
    return model


def materialize(model: nn.Module, device: torch.device | str, init: bool = True) -> nn.Module:
    """Allocate a meta-device (possibly sharded) model on `device` and initialise it.

    `to_empty` allocates each rank's shard only; `init_weights()` (the model's own, run
    under no_grad) then fills the shards. Without an `init_weights` method, each module's
    `reset_parameters` is used.
    """
    model.to_empty(device=device)
    if not init:
        return model
    with torch.no_grad():
        fn = getattr(model, "init_weights", None)
        if fn is not None:
            fn()
        else:
            for module in model.modules():
                if hasattr(module, "reset_parameters"):
                    module.reset_parameters()
    return model


def build_parallel_model(recipe, world, build=None) -> nn.Module:
    """Meta-device build -> parallelize -> materialize: the trainer's one-call path.

    `build(recipe) -> nn.Module` defaults to `bltx.build_model`.
    """
    if build is None:
        import bltx

        build = bltx.build_model
    with torch.device("meta"):
        model = build(recipe)
    parallelize(model, recipe, world)
    return materialize(model, world.device)
