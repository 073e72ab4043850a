"""Single-process tests of bltx.parallel on the real model and trainer: mesh degrees,
one-line errors, plans, float8 filter and conversion, activation checkpointing, seeded
layout-independent init, grad clipping, memory estimates. Multi-process launches of the
real CLI are in tests/test_launch_matrix.py."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import json

import bltx
from bltx.config import load_recipe
from bltx.errors import ConfigError
from bltx.model.attention import attention_backend
from bltx.parallel import (
    World, build_training_model, check_plan, clip_grad_norm_, parallelize, parameters_on_meta, plan_for,
    resolve_degrees,
)
from bltx.registry import build
from bltx.train.trainer import Trainer
from bltx.parallel.float8 import float8_filter
from bltx.parallel.memory import estimate_memory
from bltx.parallel.mesh import Degrees
from bltx.parallel.plans import default_plan
from bltx.sections import ParallelismConfig, Recipe


# The real model: the demo recipe, shortened (a 3-step run takes a few seconds).
SMALL = ["data.seq_len=128", "model.max_patches=64", "training.steps=3", "training.dtype=\"float32\"",
         "metrics.log_interval=1", "metrics.tensorboard=false", "metrics.progress_bar=false",
         "eval.interval=0", "checkpoint.interval=3"]


def tiny(tmp_path, *overrides: str):
    return load_recipe("recipes/tiny.toml", [*SMALL, f"job.dump_dir=\"{tmp_path}\"", *overrides])


def blt_model():
    """The demo recipe's BLT, built and initialised the way the trainer builds it."""
    return build_training_model(load_recipe("recipes/tiny.toml", SMALL), World())


def train_losses(tmp_path, *overrides: str) -> list[float]:
    """Train with the real Trainer; the logged train losses."""
    assert Trainer(tiny(tmp_path, *overrides)).fit() == 0
    rows = [json.loads(x) for x in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    return [r["loss"] for r in rows if r["split"] == "train"]


def latent_layer():
    return build("latent", {"type": "transformer", "dim": 64, "n_layers": 1, "n_heads": 4},
                 backend=attention_backend("sdpa")).layers["0"]


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
    ((-1, -1, 1), 2, "only one of"),
])
def test_degree_errors_are_one_line(cfg, world, match):
    with pytest.raises(ConfigError, match=match) as exc:
        resolve_degrees(ParallelismConfig(*cfg), world)
    one_line(exc)


@pytest.mark.parametrize("cfg, match", [
    ((1, 0, 1), r"parallelism.dp_shard = 0: must be >= 1, or -1"),
    ((1, 1, 0), r"parallelism.tp = 0: must be >= 1"),
    ((1, 1, -1), r"parallelism.tp = -1: must be >= 1"),
])
def test_bad_degrees_are_one_line_when_the_recipe_loads(cfg, match):
    # Named as bad degrees at load, not later as a launch that does not fit them (issue 25).
    from bltx.schema import to_dataclass

    with pytest.raises(ConfigError, match=match) as exc:
        to_dataclass(ParallelismConfig, dict(zip(("dp_replicate", "dp_shard", "tp"), cfg)))
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
    assert w.dp_mean(x) is x and w.dp_sum(x) is x and w.all_sum(x) is x


def test_tp_not_dividing_heads_is_one_line():
    model = blt_model()  # latent: 4 heads
    with pytest.raises(ConfigError, match=r"tp = 3 must divide .*n_heads = 4") as exc:
        check_plan(model, plan_for(model), 3)
    one_line(exc)
    check_plan(model, plan_for(model), 2)  # divides: fine


def test_parallelize_refuses_tp_before_touching_the_model():
    recipe = load_recipe("recipes/tiny.toml", ["float8.enable=true"])
    with parameters_on_meta():
        model = bltx.build_model(recipe)
    with pytest.raises(ConfigError, match="tp = 3"):
        parallelize(model, recipe, World(degrees=Degrees(1, 1, 3)))
    assert type(model.latent.layers["0"].attention.wq) is nn.Linear  # float8 not applied yet


# -- plans -------------------------------------------------------------------------------------

def test_plan_lookup_own_and_default():
    latent = build("latent", {"type": "transformer", "dim": 64, "n_layers": 2, "n_heads": 4},
                   backend=attention_backend("sdpa"))
    assert plan_for(latent).blocks == ["layers.0", "layers.1"]

    class Wrapper(nn.Module):
        def __init__(self):
            super().__init__()
            self.body = nn.Module()
            self.body.layers = nn.ModuleList([latent_layer(), nn.Linear(4, 4)])

    plan = default_plan(Wrapper())
    assert plan.blocks == ["body.layers.0", "body.layers.1"]
    assert plan.tp_blocks == ["body.layers.0"]  # only the Llama-style one


def test_a_model_with_its_own_plan_gets_it_and_a_listed_block_must_be_llama_style():
    from bltx.parallel.plans import ParallelPlan
    from bltx.parallel.tp import apply_tp_block

    class Planned(nn.Module):  # the `parallel_plan` capability (bltx/protocols.py)
        def parallel_plan(self):
            return ParallelPlan(blocks=["mlp"], tp_blocks=["mlp"])

    assert plan_for(Planned()).tp_blocks == ["mlp"]
    block = latent_layer()
    block.feed_forward.w3 = nn.Identity()  # no longer splittable
    with pytest.raises(ConfigError, match=r"^mlp: .*not a Llama-style block.*missing: feed_forward\.w3 \(an nn\.Linear\)$") as exc:
        apply_tp_block(block, None, where="mlp")
    one_line(exc)


def test_blt_plan():
    model = blt_model()
    plan = plan_for(model)
    assert plan.tp_blocks == ["latent.layers.0", "latent.layers.1", "latent.layers.2"]
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


def test_float8_training_tracks_fp32(tmp_path):
    """The real trainer with float8 (both recipes) stays within 0.1 of fp32 over 3 steps."""
    expected = train_losses(tmp_path / "fp32")
    for recipe_name in ("tensorwise", "rowwise"):
        got = train_losses(tmp_path / recipe_name, "float8.enable=true", f"float8.recipe=\"{recipe_name}\"")
        torch.testing.assert_close(torch.tensor(got), torch.tensor(expected), rtol=0, atol=0.1)


def test_blt_float8_keeps_head_embeddings_and_patcher_high_precision():
    from torchao.float8.float8_linear import Float8Linear

    model = build_training_model(load_recipe("recipes/tiny.toml", [*SMALL, "float8.enable=true"]), World())
    assert type(model.decoder.output) is nn.Linear
    assert not any(isinstance(m, Float8Linear) for m in model.patcher.modules())
    assert isinstance(model.latent.layers["0"].attention.wq, Float8Linear)
    assert type(model.byte_embedder.hash_table) is nn.EmbeddingBag


# -- activation checkpointing ------------------------------------------------------------------

@pytest.mark.parametrize("mode", ["full", "selective"])
def test_activation_checkpointing_exact_and_names_stable(mode, tmp_path):
    """The trainer with AC gives the losses of the trainer without it, and its checkpoint
    holds the plain parameter names (it loads into a model without AC)."""
    from bltx.checkpoint import load_model_state

    expected = train_losses(tmp_path / "none")
    got = train_losses(tmp_path / mode, f"activation_checkpoint.mode=\"{mode}\"")
    torch.testing.assert_close(torch.tensor(got), torch.tensor(expected), rtol=0, atol=1e-6)
    saved = load_model_state(tmp_path / mode / "checkpoints" / "step_00000003")
    assert set(saved) == set(blt_model().state_dict())


# -- seeded init, clipping, memory ----------------------------------------------------------------

def test_initial_weights_do_not_depend_on_wrappers_or_build_order():
    """Each parameter is drawn from (seed, its name): activation checkpointing (which
    renames modules) and float8 (which swaps classes) leave the initial weights bitwise
    equal; another seed changes them."""
    ref = blt_model().state_dict()
    for extra in (["activation_checkpoint.mode=\"full\""], ["float8.enable=true"]):
        model = build_training_model(load_recipe("recipes/tiny.toml", [*SMALL, *extra]), World())
        got = {k.replace("_checkpoint_wrapped_module.", ""): v for k, v in model.state_dict().items()}
        assert set(got) == set(ref)
        for k in ref:
            assert torch.equal(got[k], ref[k]), k
    other = build_training_model(load_recipe("recipes/tiny.toml", [*SMALL, "job.seed=1"]), World())
    assert not torch.equal(other.state_dict()["latent.layers.0.attention.wq.weight"], ref["latent.layers.0.attention.wq.weight"])


def test_sharded_init_reassembles_the_full_tensor_bitwise(monkeypatch):
    """A rank fills only its shard (rows and columns at an offset), drawing only the
    seeded row blocks it overlaps; the shards of any split reassemble the full tensor."""
    from bltx.model import init

    full = torch.empty(3000, 700)  # > one row block (2^20 elements), uneven splits
    names = {id(full): "table.weight"}
    seeding = init._Seeding(7, names)
    init._fill_seeded(full, seeding, "table.weight", lambda t, g: nn.init.trunc_normal_(t, std=0.02, generator=g))
    for rows, cols in ((2, 1), (1, 2), (3, 2), (8, 1)):
        out = torch.full_like(full, float("nan"))
        for r in torch.arange(3000).tensor_split(rows):
            for c in torch.arange(700).tensor_split(cols):
                shard = out[r[0]:r[-1] + 1, c[0]:c[-1] + 1]
                monkeypatch.setattr(init, "local_part", lambda t, s=shard, o=(int(r[0]), int(c[0])): (s, o, (3000, 700)))
                init._fill_seeded(shard, seeding, "table.weight",
                                  lambda t, g: nn.init.trunc_normal_(t, std=0.02, generator=g))
        monkeypatch.undo()
        assert torch.equal(out, full), (rows, cols)


def test_clip_grad_norm_matches_torch():
    a, b = blt_model(), blt_model()
    ids = torch.randint(4, 260, (2, 64), generator=torch.Generator().manual_seed(0))
    for m in (a, b):
        m(ids).logits.square().mean().backward()
    expected = torch.nn.utils.clip_grad_norm_([p for p in a.parameters() if p.grad is not None], 0.01)
    got = clip_grad_norm_(b.parameters(), 0.01)
    torch.testing.assert_close(got, expected)
    for pa, pb in zip(a.parameters(), b.parameters()):
        if pa.grad is not None:
            torch.testing.assert_close(pa.grad, pb.grad)


def test_memory_estimate_scales_with_degrees():
    with torch.device("meta"):
        model = build("latent", {"type": "transformer", "dim": 64, "n_layers": 2, "n_heads": 4},
                      backend=attention_backend("sdpa"))
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
        # The 3.84B hash-table parameters stay row-sharded: FSDP gathers < 1 GiB per rank
        # (7.43 GiB when the tables were gathered whole).
        assert "row-sharded embeddings" in text
        gathered = float(next(x for x in text.splitlines() if "fsdp gathered" in x).split()[-2])
        assert gathered < 1.0


@pytest.mark.parametrize("table", [nn.EmbeddingBag(10, 4, mode="mean"), nn.Embedding(10, 4, padding_idx=0),
                                   nn.Embedding(10, 4, max_norm=1.0), nn.Linear(4, 4)])
def test_row_sharding_refuses_what_its_lookup_does_not_implement(table):
    """A plan listing a table the row-sharded lookup cannot reproduce is one ConfigError line,
    not a silent fallback to FSDP gathering it whole (checked before any mesh is touched)."""
    from bltx.parallel.row_sharded import apply_row_sharding

    model = nn.Module()
    model.table = table
    with pytest.raises(ConfigError, match="row_sharded lists 'table'.*row_shard_embeddings = false"):
        apply_row_sharding(model, ["table"], mesh=None)
