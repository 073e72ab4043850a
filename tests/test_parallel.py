"""Single-process tests of bltx.parallel: mesh degrees, one-line errors, plans, float8
filter, activation checkpointing, meta-device init, grad clipping, checkpoints, memory.
Multi-process runs are in test_parallel_dist.py."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from parallel_helpers import (
    TinyConfig, TinyLlama, blt_model, make_batches, make_optimizer, reference_state, train,
)

from bltx.errors import CheckpointError, ConfigError
from bltx.parallel import (
    World, check_plan, clip_grad_norm_, load_sharded, materialize, parallelize, plan_for,
    resolve_degrees, save_sharded,
)
from bltx.parallel.float8 import float8_filter
from bltx.parallel.memory import estimate_memory
from bltx.parallel.mesh import Degrees
from bltx.parallel.plans import default_plan
from bltx.sections import ParallelismConfig, Recipe


def one_line(exc: pytest.ExceptionInfo) -> str:
    text = str(exc.value)
    assert "\n" not in text
    return text


# -- degrees and mesh errors ------------------------------------------------------------------

@pytest.mark.parametrize("cfg, world, expected", [
    ((1, -1, 1), 8, (1, 8, 1)),
    ((2, -1, 2), 8, (2, 2, 2)),
    ((1, -1, 4), 4, (1, 1, 4)),
    ((1, 2, 2), 4, (1, 2, 2)),
    ((1, -1, 1), 1, (1, 1, 1)),
    ((-1, 8, 1), 32, (4, 8, 1)),
])
def test_resolve_degrees(cfg, world, expected):
    d = resolve_degrees(ParallelismConfig(*cfg), world)
    assert d.shape() == expected and d.world_size == world


@pytest.mark.parametrize("cfg, world, match", [
    ((1, 3, 1), 2, r"dp_replicate \(1\) x dp_shard \(3\) x tp \(1\) = 3, but the world size is 2"),
    ((1, -1, 3), 4, r"tp \(3\) = 3 does not divide the world size 4"),
    ((1, 0, 1), 2, "dp_shard = 0"),
    ((1, 1, 0), 2, "tp = 0"),
    ((-1, -1, 1), 2, "only one of"),
    ((1, 1, -1), 2, "tp cannot be inferred"),
])
def test_degree_errors_are_one_line(cfg, world, match):
    with pytest.raises(ConfigError, match=match) as exc:
        resolve_degrees(ParallelismConfig(*cfg), world)
    one_line(exc)


def test_world_from_env_checks_degrees_before_starting_processes(monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "2")
    with pytest.raises(ConfigError, match="world size is 2"):
        World.from_env("cpu", ParallelismConfig(1, 4, 1))
    assert not torch.distributed.is_initialized()


def test_single_process_world():
    w = World.from_env("cpu", ParallelismConfig())
    assert (w.dp_rank, w.dp_size, w.tp_size, w.mesh) == (0, 1, 1, None)
    x = torch.tensor(3.0)
    assert w.mean(x) is x


def test_tp_not_dividing_heads_is_one_line():
    model = TinyLlama(TinyConfig(n_heads=4, n_kv_heads=2))
    with pytest.raises(ConfigError, match=r"tp = 4 must divide .*n_kv_heads = 2") as exc:
        check_plan(model, plan_for(model), 4)
    one_line(exc)
    check_plan(model, plan_for(model), 2)  # divides both: fine


def test_parallelize_refuses_tp_before_touching_the_model():
    model = TinyLlama()
    world = World(degrees=Degrees(1, 1, 3))
    with pytest.raises(ConfigError, match="tp = 3"):
        parallelize(model, Recipe(), world)
    assert type(model.layers["0"].attention.wq) is nn.Linear


def test_foreign_world_with_tp_is_refused():
    class TrainerWorld:  # what bltx.train.world.World looks like
        rank, world_size, local_rank, device = 0, 2, 0, torch.device("cpu")

    recipe = Recipe()
    recipe.parallelism = ParallelismConfig(1, 1, 2)
    with pytest.raises(ConfigError, match="needs bltx.parallel.World"):
        parallelize(TinyLlama(), recipe, TrainerWorld())


# -- plans -------------------------------------------------------------------------------------

def test_plan_lookup_own_and_default():
    model = TinyLlama()
    assert plan_for(model).blocks == ["layers.0", "layers.1"]

    class Wrapper(nn.Module):
        def __init__(self):
            super().__init__()
            self.body = nn.Module()
            self.body.layers = nn.ModuleList([TinyLlama().layers["0"], nn.Linear(4, 4)])

    plan = default_plan(Wrapper())
    assert plan.blocks == ["body.layers.0", "body.layers.1"]
    assert plan.tp_blocks == ["body.layers.0"]  # only the Llama-style one


def test_blt_plan():
    model = blt_model()
    plan = plan_for(model)
    assert plan.tp_blocks == ["latent.layers.0", "latent.layers.1"]
    assert "encoder.layers.0" in plan.blocks and "decoder.cross_attn.0" in plan.blocks
    assert plan.blocks[-1] == "decoder.layers.1"
    assert plan.fsdp_units == ["byte_embedder"] and plan.replicated == ["patcher"]
    for fqn in plan.blocks:
        model.get_submodule(fqn)
    with pytest.raises(ConfigError, match="tp = 3"):
        check_plan(model, plan, 3)


# -- float8 ------------------------------------------------------------------------------------

def test_float8_filter():
    keep = float8_filter(skip=["output", "patcher"], min_dim=32)
    assert keep(nn.Linear(64, 128), "layers.0.attention.wq")
    assert not keep(nn.Linear(64, 128), "output")                 # head
    assert not keep(nn.Linear(64, 128), "patcher.entropy_model.layers.0.attention.wq")
    assert not keep(nn.Linear(64, 100), "layers.0.w")             # not a multiple of 16
    assert not keep(nn.Linear(16, 128), "layers.0.w")             # tiny
    assert not keep(nn.Embedding(64, 64), "tok_embeddings")
    assert keep(nn.Linear(64, 128), "outputs_proj")               # prefix means path component


def test_float8_single_process_tracks_fp32():
    from torchao.float8.float8_linear import Float8Linear

    ref = TinyLlama()
    ref.load_state_dict(reference_state())
    batches = make_batches(3, 4, TinyConfig())
    expected = train(ref, batches)
    for recipe_name in ("tensorwise", "rowwise"):
        model = TinyLlama()
        model.load_state_dict(reference_state())
        recipe = Recipe()
        recipe.float8.enable, recipe.float8.recipe = True, recipe_name
        parallelize(model, recipe, World())
        assert isinstance(model.layers["0"].feed_forward.w2, Float8Linear)
        assert type(model.output) is nn.Linear and type(model.tok_embeddings) is nn.Embedding
        torch.testing.assert_close(torch.tensor(train(model, batches)), torch.tensor(expected), rtol=0, atol=0.1)


def test_blt_float8_keeps_head_embeddings_and_patcher_high_precision():
    from torchao.float8.float8_linear import Float8Linear

    model = blt_model()
    recipe = Recipe()
    recipe.float8.enable = True
    parallelize(model, recipe, World())
    assert type(model.decoder.output) is nn.Linear
    assert not any(isinstance(m, Float8Linear) for m in model.patcher.modules())
    assert isinstance(model.latent.layers["0"].attention.wq, Float8Linear)
    assert type(model.byte_embedder.hash_table) is nn.Embedding


# -- activation checkpointing ------------------------------------------------------------------

@pytest.mark.parametrize("mode", ["full", "selective"])
def test_activation_checkpointing_exact_and_names_stable(mode, tmp_path):
    ref = TinyLlama()
    ref.load_state_dict(reference_state())
    batches = make_batches(3, 4, TinyConfig())
    expected = train(ref, batches)
    model = TinyLlama()
    model.load_state_dict(reference_state())
    recipe = Recipe()
    recipe.activation_checkpoint.mode = mode
    parallelize(model, recipe, World())
    assert "CheckpointWrapper" in type(model.layers["0"]).__name__
    torch.testing.assert_close(torch.tensor(train(model, batches)), torch.tensor(expected), rtol=0, atol=1e-6)
    # A checkpoint of the wrapped model loads into a plain one: names are unchanged.
    save_sharded(tmp_path / "ckpt", model)
    plain = TinyLlama()
    load_sharded(tmp_path / "ckpt", plain)
    ref_sd = plain.state_dict()
    for name, p in model.named_parameters():
        torch.testing.assert_close(ref_sd[name.replace("_checkpoint_wrapped_module.", "")], p.detach())


# -- meta init, clipping, checkpoints, memory ----------------------------------------------------

def test_meta_build_parallelize_materialize():
    recipe = Recipe()
    recipe.activation_checkpoint.mode = "full"
    with torch.device("meta"):
        model = TinyLlama()
    parallelize(model, recipe, World())
    materialize(model, "cpu")
    assert all(not p.is_meta and torch.isfinite(p).all() for p in model.parameters())
    losses = train(model, make_batches(2, 2, TinyConfig()))
    assert all(3.0 < x < 6.0 for x in losses)


def test_clip_grad_norm_matches_torch():
    torch.manual_seed(0)
    a, b = TinyLlama(), TinyLlama()
    b.load_state_dict(a.state_dict())
    ids = make_batches(1, 2, TinyConfig())[0]
    for m in (a, b):
        m(ids[:, :-1]).square().mean().backward()
    expected = torch.nn.utils.clip_grad_norm_(a.parameters(), 0.01)
    got = clip_grad_norm_(b.parameters(), 0.01)
    torch.testing.assert_close(got, expected)
    for pa, pb in zip(a.parameters(), b.parameters()):
        torch.testing.assert_close(pa.grad, pb.grad)


def test_save_load_sharded_single_process_resumes_exactly(tmp_path):
    batches = make_batches(4, 2, TinyConfig())
    model = TinyLlama()
    model.load_state_dict(reference_state())
    opt = make_optimizer(model)
    train(model, batches[:2], opt=opt)
    save_sharded(tmp_path / "c", model, opt, extra={"step": 2, "sampler": [1, 2]})
    expected = train(model, batches[2:], opt=opt)
    fresh = TinyLlama()
    fresh_opt = make_optimizer(fresh)
    assert load_sharded(tmp_path / "c", fresh, fresh_opt) == {"step": 2, "sampler": [1, 2]}
    assert train(fresh, batches[2:], opt=fresh_opt) == expected


def test_load_sharded_errors_are_one_line(tmp_path):
    with pytest.raises(CheckpointError, match="no sharded checkpoint") as exc:
        load_sharded(tmp_path / "missing", TinyLlama())
    one_line(exc)
    save_sharded(tmp_path / "c", TinyLlama())
    with pytest.raises(CheckpointError, match="cannot load checkpoint") as exc:
        load_sharded(tmp_path / "c", TinyLlama(TinyConfig(dim=128, ffn_dim=256)))
    one_line(exc)


def test_memory_estimate_scales_with_degrees():
    with torch.device("meta"):
        model = TinyLlama()
    n = sum(p.numel() for p in model.parameters())
    recipe = Recipe()
    one = estimate_memory(model, recipe, 1)
    assert (one.params, one.grads, one.optimizer, one.gathered) == (4 * n, 4 * n, 8 * n, 0)
    recipe.parallelism = ParallelismConfig(1, -1, 1)
    four = estimate_memory(model, recipe, 4)
    assert four.params == pytest.approx(one.params / 4, rel=1e-6)
    assert four.gathered > 0
    recipe.parallelism = ParallelismConfig(1, 1, 2)
    tp = estimate_memory(model, recipe, 2)
    block_linears = sum(p.numel() for name, p in model.named_parameters()
                        if ".attention.w" in name or ".feed_forward.w" in name)
    assert tp.params == 4 * (n - block_linears // 2)
    assert "total" in "\n".join(tp.lines())


@pytest.mark.parametrize("name, world_size", [("400m", 8), ("1b", 8), ("8b", 64)])
def test_scale_recipes_load_and_plan_on_meta(name, world_size):
    """The big recipes load, build on the meta device and fit their parallel plan."""
    import bltx
    from bltx.parallel.memory import dry_run_lines

    recipe = bltx.load_recipe(f"recipes/{name}.toml")
    with torch.device("meta"):
        model = bltx.build_model(recipe)
    text = "\n".join(dry_run_lines(model, recipe, world_size))
    assert "memory per rank" in text and "total" in text
    if name == "8b":
        assert "tp=2" in text and "tensor-parallel blocks: 32" in text
