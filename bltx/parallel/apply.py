"""`parallelize(model, recipe, world)`: the scaling steps in torchtitan's order.

    model = build_training_model(recipe, world)   # the one build path, 1 process included:
        # build (parameters on meta) -> parallelize -> materialize (to_empty + seeded init)
    optimizer = build_optimizer(model, ...)       # after: FSDP/TP replaced the parameters

Why this order: float8 swaps module classes, so it comes before anything that wraps or
shards those modules; TP shards parameters into DTensors that FSDP then shards again on
the data-parallel mesh (2-D); AC wraps the TP'd blocks; compile sees the final block
(float8 casts, TP collectives, recompute) as one graph; FSDP comes last so its hooks sit
outside the compiled graphs. Every step is optional and driven by the recipe.
"""

from __future__ import annotations

import dataclasses
from contextlib import contextmanager
from dataclasses import dataclass, field

import torch
from torch import nn

from bltx.errors import ConfigError
from bltx.model.init import seeded_init
from bltx.parallel.ac import apply_ac
from bltx.parallel.compile import apply_compile, compile_whole
from bltx.parallel.float8 import apply_float8
from bltx.parallel.fsdp import apply_fsdp
from bltx.parallel.plans import ParallelPlan, plan_for
from bltx.parallel.row_sharded import apply_row_sharding
from bltx.parallel.tp import apply_tp, check_heads
from bltx.protocols import InitWeights


@dataclass
class ParallelSummary:
    """What parallelize did, for logs and --dry-run."""

    degrees: str = ""
    float8: list[str] = field(default_factory=list)
    tp_blocks: list[str] = field(default_factory=list)
    ac: str = "none"
    compiled: str = "off"
    row_sharded: list[str] = field(default_factory=list)
    fsdp_blocks: int = 0

    def lines(self) -> list[str]:
        return [
            f"parallel: {self.degrees}",
            f"float8 linears: {len(self.float8)}",
            f"tensor-parallel blocks: {len(self.tp_blocks)}",
            f"activation checkpointing: {self.ac}",
            f"compile: {self.compiled}",
            f"fsdp shard groups: {self.fsdp_blocks} units + root" if self.fsdp_blocks else "fsdp: off",
            f"row-sharded embeddings: {', '.join(self.row_sharded) or 'none'}",
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
        check_heads(attn.n_heads, attn.n_kv_heads or attn.n_heads, tp, fqn)


def parallelize(model: nn.Module, recipe, world, plan: ParallelPlan | None = None) -> nn.Module:
    """Apply float8, tensor parallel, activation checkpointing, compile and FSDP2 to `model`
    in place, as `recipe` asks and `world` (a bltx.parallel.World) allows; returns `model`.

    Compile: per block under FSDP (its hooks must sit between the compiled graphs), else
    the whole model in one graph (no per-block boundaries for the compiler to stop at).
    Call `materialize` after. What was done is left in `model.parallel_summary`.
    """
    plan = plan or plan_for(model)
    degrees = world.degrees
    check_plan(model, plan, degrees.tp)
    summary = ParallelSummary(degrees=degrees.describe())

    if plan.dp_root is not None and world.dp_size > 1:
        plan.dp_root(model, world)
    if recipe.float8.enable:
        summary.float8 = apply_float8(model, recipe.float8.recipe, plan.float8_skip, plan.float8_min_dim)
    if degrees.tp > 1:
        if recipe.parallelism.sequence_parallel:
            if plan.tp_root is None:
                raise ConfigError(f"parallelism.sequence_parallel: {type(model).__name__}'s parallel plan has no "
                                  f"sequence-parallel boundaries (tp_root); set it to false")
            plan = dataclasses.replace(plan, sequence_parallel=True)
        apply_tp(model, plan, world.tp_mesh,
                 float8_tensorwise=recipe.float8.enable and recipe.float8.recipe == "tensorwise")
        summary.tp_blocks = list(plan.tp_blocks)
    row_sharded: list[str] = []
    if (plan.row_sharded and recipe.parallelism.row_shard_embeddings and degrees.dp_shard > 1
            and degrees.dp_replicate == 1):
        # (With replicas the slices would also need a gradient all-reduce across them:
        # not done, so HSDP keeps gathering the tables through FSDP.)
        apply_row_sharding(model, plan.row_sharded, world.mesh, "dp_shard")
        row_sharded = list(plan.row_sharded)
        summary.row_sharded = row_sharded
    mode = recipe.activation_checkpoint.mode
    apply_ac(model, plan.blocks, mode)
    summary.ac = mode
    if recipe.compile.enable:
        if compile_scope(model, recipe, degrees, plan) == "blocks":
            if plan.static_shapes is not None:
                plan.static_shapes(model)
            apply_compile(model, plan.blocks, recipe.compile.fullgraph)
            summary.compiled = f"{len(plan.blocks)} blocks"
        else:
            summary.compiled = compile_whole(model, plan.compiled_root, recipe.compile.fullgraph)
    if degrees.fsdp:
        units = list(plan.fsdp_units) + list(plan.blocks)
        apply_fsdp(model, units, world.dp_mesh, recipe.training.dtype, list(plan.replicated) + row_sharded)
        summary.fsdp_blocks = len(units)
    model.parallel_summary = summary
    return model


# Above this many parameters "auto" compiles per block: a whole-model graph grows with depth
# and the released 1B shape took over 110 s to compile whole (tools/gpu_check.py, H200 host).
BLOCKS_ABOVE_PARAMS = 100_000_000


def compile_scope(model: nn.Module, recipe, degrees, plan: ParallelPlan) -> str:
    """"model" or "blocks" for `compile.scope` (see sections.CompileConfig)."""
    scope = recipe.compile.scope
    if degrees.fsdp:
        if scope == "model":
            raise ConfigError("compile.scope = 'model' cannot be used with FSDP (its hooks sit between "
                              "blocks); use 'blocks' or 'auto'")
        return "blocks"
    if scope == "auto":
        big = sum(p.numel() for p in model.parameters()) > BLOCKS_ABOVE_PARAMS
        return "blocks" if big and plan.blocks else "model"
    return scope


@contextmanager
def parameters_on_meta():
    """Build modules with their parameters on the meta device and everything else (buffers
    such as a patcher's byte tables, constants computed in __init__) real.

    A plain `torch.device("meta")` build would leave buffers without values after
    `to_empty`; here only parameters are deferred, so `materialize` has nothing to redo but
    the weights. Factory calls in __init__ (`torch.empty` of a weight) allocate lazily and
    are moved to meta before any initialiser touches them.
    """
    original = nn.Module.register_parameter

    def register(module, name, param):
        if param is not None and not param.is_meta:
            param = nn.Parameter(param.to("meta"), requires_grad=param.requires_grad)
        original(module, name, param)

    nn.Module.register_parameter = register
    try:
        yield
    finally:
        nn.Module.register_parameter = original


def materialize(model: nn.Module, device: torch.device | str, seed: int = 0) -> nn.Module:
    """Allocate a meta-parameter (possibly sharded) model on `device` and initialise it once.

    `to_empty` allocates each rank's shard only; `init_weights()` (the model's own, under
    no_grad and `seeded_init`) then fills the shards, each parameter drawn from (seed, its
    name) on its full shape (bltx/model/init.py), so the weights do not depend on the
    layout. Frozen components load their weights here too (the entropy patcher's
    checkpoint), once. Without `init_weights`, each module's `reset_parameters` is used.
    """
    buffers = {name: b for name, b in model.named_buffers() if not b.is_meta}
    model.to_empty(device=device)
    # to_empty also empties real buffers; put their values back (moved to the device).
    with torch.no_grad():
        for name, value in buffers.items():
            model.get_buffer(name).copy_(value.to(device))
    with torch.no_grad(), seeded_init(model, seed):
        if isinstance(model, InitWeights):
            model.init_weights()
        else:  # a plain torch model: torch modules' own initialisers (a torch convention)
            for module in model.modules():
                if hasattr(module, "reset_parameters"):
                    module.reset_parameters()
    return model


def build_training_model(recipe, world, build=None) -> nn.Module:
    """The one build path of every launch, one process included: build with parameters on
    meta -> float8 -> TP -> AC -> compile -> FSDP -> to_empty -> initialise once.

    `build(recipe) -> nn.Module` defaults to `bltx.build_model`.
    """
    if build is None:
        import bltx

        build = bltx.build_model
    with parameters_on_meta():
        model = build(recipe)
    parallelize(model, recipe, world)
    return materialize(model, world.device, recipe.job.seed)
