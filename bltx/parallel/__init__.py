"""Scaling layer: device mesh, FSDP2, tensor parallel, float8, activation checkpointing,
per-block compile and a per-rank memory estimate (checkpoints: bltx/checkpoint).

Trainer's use:

    from bltx.parallel import World, build_training_model, clip_grad_norm_
    world = World.from_env(recipe.job.device, recipe.parallelism)   # 1 process: a 1-rank world
    model = build_training_model(recipe, world)         # meta -> parallelize -> seeded init
    ...each rank reads batch shard world.dp_rank of world.dp_size...
    loss.backward(); clip_grad_norm_(model.parameters(), max_norm); opt.step()
    log(world.dp_mean(loss.detach()))
"""

from bltx.parallel.apply import build_training_model, check_plan, materialize, parallelize, parameters_on_meta
from bltx.parallel.grad import clip_grad_norm_
from bltx.parallel.mesh import Degrees, build_mesh, resolve_degrees
from bltx.parallel.plans import ParallelPlan, plan_for, register_plan
from bltx.parallel.world import World

__all__ = [
    "Degrees",
    "ParallelPlan",
    "World",
    "build_mesh",
    "build_training_model",
    "check_plan",
    "clip_grad_norm_",
    "materialize",
    "parameters_on_meta",
    "parallelize",
    "plan_for",
    "register_plan",
    "resolve_degrees",
]
