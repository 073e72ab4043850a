"""Scaling layer: device mesh, FSDP2, tensor parallel, float8, activation checkpointing,
per-block compile, sharded checkpoints and a per-rank memory estimate.

Trainer's use:

    from bltx.parallel import World, build_parallel_model, clip_grad_norm_, save_sharded, load_sharded
    world = World.from_env(recipe.job.device, recipe.parallelism)
    model = build_parallel_model(recipe, world)         # meta -> parallelize -> init
    ...each rank reads batch shard world.dp_rank of world.dp_size...
    loss.backward(); clip_grad_norm_(model.parameters(), max_norm); opt.step()
    log(world.mean(loss.detach()))
"""

from bltx.parallel.apply import build_parallel_model, check_plan, materialize, parallelize
from bltx.parallel.checkpoint import full_state, load_full_state, load_sharded, save_sharded
from bltx.parallel.grad import clip_grad_norm_
from bltx.parallel.mesh import Degrees, build_mesh, resolve_degrees
from bltx.parallel.plans import ParallelPlan, plan_for, register_plan
from bltx.parallel.world import World

__all__ = [
    "Degrees",
    "ParallelPlan",
    "World",
    "build_mesh",
    "build_parallel_model",
    "check_plan",
    "clip_grad_norm_",
    "full_state",
    "load_full_state",
    "load_sharded",
    "materialize",
    "parallelize",
    "plan_for",
    "register_plan",
    "resolve_degrees",
    "save_sharded",
]
