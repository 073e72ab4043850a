"""The seam where a built model becomes the model that trains: `parallelize(model, recipe, world)`.

Single process it only applies `torch.compile` when the recipe asks. The scale step plugs in
here, in torchtitan's order (float8 -> tensor parallel -> activation checkpointing ->
compile per block -> FSDP2): when the recipe asks for any of those, or runs on more than one
rank, this hands over to `bltx.parallel.parallelize(model, recipe, world)` if that module
provides it, and otherwise stops with a clear error rather than silently training unsharded.
"""

from __future__ import annotations

import importlib
import os
from typing import Callable

import torch
from torch import nn

from bltx.errors import ConfigError
from bltx.sections import Recipe
from bltx.train.world import World


def needs_parallel(recipe: Recipe, world: World) -> list[str]:
    """What in the recipe (or the launch) needs the parallel layer; empty when nothing."""
    asks = []
    if world.world_size > 1:
        asks.append(f"world size {world.world_size}")
    if recipe.parallelism.tp > 1:
        asks.append("parallelism.tp > 1")
    if recipe.parallelism.dp_replicate > 1 or recipe.parallelism.dp_shard > 1:
        asks.append("data-parallel degrees > 1")
    if recipe.float8.enable:
        asks.append("float8.enable")
    if recipe.activation_checkpoint.mode != "none":
        asks.append(f"activation_checkpoint.mode = '{recipe.activation_checkpoint.mode}'")
    return asks


def parallelize(model: nn.Module, recipe: Recipe, world: World) -> nn.Module:
    asks = needs_parallel(recipe, world)
    if asks:
        try:
            parallel = importlib.import_module("bltx.parallel")
            apply = getattr(parallel, "parallelize")
        except (ImportError, AttributeError):
            raise ConfigError(
                f"{', '.join(asks)} needs bltx.parallel.parallelize, which is not available "
                f"in this build; run single-process with those options off"
            ) from None
        # The parallel layer owns compile-per-block too (it must come before FSDP wrapping).
        return apply(model, recipe, world)
    if recipe.compile.enable:
        # In place, so the module keeps its class and methods (model.patch) and its
        # state_dict keys carry no `_orig_mod.` prefix.
        model.compile(fullgraph=recipe.compile.fullgraph)
    return model


def _parallel_layer():
    try:
        return importlib.import_module("bltx.parallel")
    except ImportError:
        return None


def make_world(recipe: Recipe):
    """The process's World: bltx.parallel's (device mesh, dp/tp coordinates) when launched
    on several ranks or asked for parallel features, else the single-process one."""
    parallel = _parallel_layer()
    launched = int(os.environ.get("WORLD_SIZE", "1")) > 1
    if parallel is not None and (launched or needs_parallel(recipe, World())):
        return parallel.World.from_env(recipe.job.device, recipe.parallelism)
    return World.from_env(recipe.job.device)


def build_training_model(recipe: Recipe, world, build_single: Callable[[Recipe, object], nn.Module]) -> nn.Module:
    """The model the trainer trains. Parallel runs take bltx.parallel's one-call path
    (meta-device build -> parallelize -> materialize + init_weights), so a model larger
    than one device never exists unsharded; single-process runs build on the device and go
    through `parallelize` (compile only)."""
    parallel = _parallel_layer()
    if needs_parallel(recipe, world) and parallel is not None and hasattr(parallel, "build_parallel_model"):
        torch.manual_seed(recipe.job.seed)  # same initial weights on every rank
        return parallel.build_parallel_model(recipe, world)
    return parallelize(build_single(recipe, world), recipe, world)


def clip_grad_norm(model: nn.Module, max_norm: float) -> torch.Tensor:
    """Clip gradients; returns the total norm as a plain tensor. Sharded models (DTensor
    grads on several meshes) use bltx.parallel's clip, which reduces across meshes."""
    limit = max_norm if max_norm > 0 else float("inf")
    if hasattr(model, "parallel_summary"):
        return _parallel_layer().clip_grad_norm_(model.parameters(), limit)
    norm = torch.nn.utils.clip_grad_norm_(model.parameters(), limit)
    return norm.full_tensor() if hasattr(norm, "full_tensor") else norm
