"""Launched by tests/test_parallel_dist.py under torchrun (2 processes, gloo).

    torchrun --standalone --nproc_per_node 2 parallel_train.py OUT_DIR SCENARIO [SCENARIO ...]

Each scenario builds the stand-in model on the meta device, parallelizes it through
`bltx.parallel.parallelize` with the scenario's recipe, loads the shared reference
weights, trains a few steps on the shared data (each dp rank its shard) and rank 0 writes
OUT_DIR/SCENARIO.json with the losses. Checkpoint scenarios also save/load DCP folders.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

# Per-process inductor cache: two ranks compiling into one cache folder race.
os.environ.setdefault("TORCHINDUCTOR_CACHE_DIR", f"/tmp/bltx_inductor_{os.getpid()}")
if "BLTX_INDUCTOR_BASE" in os.environ:
    os.environ["TORCHINDUCTOR_CACHE_DIR"] = f"{os.environ['BLTX_INDUCTOR_BASE']}/rank{os.environ.get('RANK', '0')}"

import torch  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from parallel_helpers import (  # noqa: E402
    TinyConfig, TinyLlama, blt_model, blt_reference_state, make_batches, make_byte_batches,
    make_optimizer, reference_state, train,
)

from bltx.parallel import World, load_full_state, load_sharded, materialize, parallelize, save_sharded, full_state  # noqa: E402
from bltx.sections import ParallelismConfig, Recipe  # noqa: E402

STEPS, BATCH = 4, 4

# name -> (dp_replicate, dp_shard, tp, options)
SCENARIOS = {
    "fsdp": (1, 2, 1, {}),
    "hsdp": (2, 1, 1, {}),
    "tp": (1, 1, 2, {}),
    "tp_sp": (1, 1, 2, {"sp": True}),
    "fsdp_tp": (1, 1, 2, {"force_fsdp": True}),
    "fsdp_ac_full": (1, 2, 1, {"ac": "full"}),
    "fsdp_ac_selective": (1, 2, 1, {"ac": "selective"}),
    "fsdp_bf16": (1, 2, 1, {"dtype": "bfloat16"}),
    "fsdp_fp8": (1, 2, 1, {"float8": "tensorwise"}),
    "fsdp_fp8_rowwise": (1, 2, 1, {"float8": "rowwise"}),
    "tp_fp8": (1, 1, 2, {"float8": "tensorwise"}),
    "fsdp_compile": (1, 2, 1, {"compile": True}),
    "fsdp_init": (1, 2, 1, {"init": True}),
    # Needs 4 processes: the full 2-D mesh, 2 FSDP shards x 2 TP shards.
    "fsdp2_tp2": (1, 2, 2, {}),
    "fsdp2_tp2_sp": (1, 2, 2, {"sp": True}),
    # The real BLT (tiny): latent blocks tensor-parallel, all blocks FSDP units.
    "blt_fsdp": (1, 2, 1, {"model": "blt"}),
    "blt_tp": (1, 1, 2, {"model": "blt"}),
    "blt_fsdp_tp": (1, 1, 2, {"model": "blt", "force_fsdp": True}),
    "blt_fsdp_fp8_ac": (1, 2, 1, {"model": "blt", "float8": "tensorwise", "ac": "selective"}),
}


def make_recipe(opts: dict) -> Recipe:
    r = Recipe()
    r.training.dtype = opts.get("dtype", "float32")
    r.activation_checkpoint.mode = opts.get("ac", "none")
    r.compile.enable = opts.get("compile", False)
    if "float8" in opts:
        r.float8.enable = True
        r.float8.recipe = opts["float8"]
    return r


def build(name: str, world_cache: dict):
    rep, shard, tp, opts = SCENARIOS[name]
    key = (rep, shard, tp)
    if key not in world_cache:
        world_cache[key] = World.from_env("cpu", ParallelismConfig(rep, shard, tp))
    world = world_cache[key]
    recipe = make_recipe(opts)
    blt = opts.get("model") == "blt"
    with torch.device("meta"):
        model = blt_model() if blt else TinyLlama(TinyConfig(), sequence_parallel=opts.get("sp", False))
    parallelize(model, recipe, world)
    if opts.get("force_fsdp"):
        # dp x tp on 2 processes: a (dp_shard=1, tp=2) mesh still runs fully_shard on the
        # size-1 dp mesh, exercising the 2-D DTensor path (FSDP over TP shards).
        from bltx.parallel.fsdp import apply_fsdp
        from bltx.parallel.plans import plan_for

        plan = plan_for(model)
        apply_fsdp(model, plan.fsdp_units + plan.blocks, world.mesh["dp_shard"], replicated=plan.replicated)
    materialize(model, world.device, init=opts.get("init", False))
    if not opts.get("init"):
        load_full_state(model, blt_reference_state() if blt else reference_state())
    return model, world, recipe


def run_scenario(name: str, out: Path, cache: dict) -> dict:
    t0 = time.time()
    model, world, recipe = build(name, cache)
    blt = SCENARIOS[name][3].get("model") == "blt"
    batches = make_byte_batches(STEPS, BATCH) if blt else make_batches(STEPS, BATCH, TinyConfig())
    if blt:
        # The trainer patches outside the forward (statistics) before the first step: the
        # replicated patcher must work there, before FSDP's root forward ever ran.
        model.patch(batches[0][:, :-1])
    losses = train(model, batches, world)
    result = {"losses": losses, "seconds": time.time() - t0,
              "summary": model.parallel_summary.lines()}
    return result


def run_checkpoint(out: Path, cache: dict, single_ckpt: str) -> dict:
    """Save on the 2-rank FSDP mesh; load a 1-process checkpoint on FSDP and on TP."""
    batches = make_batches(4, BATCH, TinyConfig())
    result = {}
    model, world, _ = build("fsdp", cache)
    opt = make_optimizer(model)
    result["fsdp_first"] = train(model, batches[:2], world, opt)
    save_sharded(out / "ckpt_fsdp", model, opt, extra={"step": 2})
    state = full_state(model)
    if world.is_main:
        torch.save(state, out / "ckpt_fsdp_full.pt")
    result["fsdp_continued"] = train(model, batches[2:], world, opt)
    # The reverse direction: a checkpoint written by one process, loaded on 2 ranks.
    for name in ("fsdp", "tp"):
        model, world, _ = build(name, cache)
        opt = make_optimizer(model)
        extra = load_sharded(single_ckpt, model, opt)
        result[f"from_single_{name}_step"] = extra["step"]
        result[f"from_single_{name}"] = train(model, batches[2:], world, opt)
    return result


def main() -> None:
    out = Path(sys.argv[1])
    names = sys.argv[2:]
    torch.manual_seed(0)
    cache: dict = {}
    for name in names:
        if name.startswith("checkpoint="):
            result = run_checkpoint(out, cache, name.split("=", 1)[1])
            name = "checkpoint"
        else:
            result = run_scenario(name, out, cache)
        if int(os.environ.get("RANK", 0)) == 0:
            (out / f"{name}.json").write_text(json.dumps(result))
            print(f"{name}: {result.get('losses')} ({result.get('seconds', 0):.1f}s)", flush=True)
    next(iter(cache.values())).shutdown() if cache else None


if __name__ == "__main__":
    main()
