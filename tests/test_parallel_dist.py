"""Multi-process tests of bltx.parallel: 2 (and 4) CPU processes with gloo under torchrun.

One torchrun launch runs many scenarios (process start-up dominates on 2 cores); each
scenario's losses are compared here with a single-process run of the same model on the
same global batches. The checkpoint scenario saves on 2 FSDP ranks and loads here on one
process, and loads on 2 ranks (FSDP and TP) what one process saved here.
"""

from __future__ import annotations

import getpass
import os
import tempfile
from pathlib import Path

import pytest
import torch

from parallel_helpers import (
    TinyConfig, TinyLlama, blt_model, blt_reference_state, make_batches, make_byte_batches,
    make_optimizer, read_json, reference_state, torchrun, train,
)

from bltx.parallel import full_state, load_sharded, save_sharded

STEPS, BATCH = 4, 4
EXACT = dict(rtol=0, atol=2e-5)  # fp32: only reduction order differs

MAIN_SCENARIOS = [
    "fsdp", "hsdp", "tp", "tp_sp", "fsdp_tp", "fsdp_ac_full", "fsdp_ac_selective",
    "fsdp_bf16", "fsdp_fp8", "fsdp_fp8_rowwise", "tp_fp8", "fsdp_init",
    "blt_fsdp", "blt_tp", "blt_fsdp_tp", "blt_fsdp_fp8_ac",
]


def _launch(out: Path, *scenarios: str, nproc: int = 2, env: dict | None = None) -> None:
    proc = torchrun("parallel_train.py", str(out), *scenarios, nproc=nproc, env=env)
    if proc.returncode != 0:
        tail = "\n".join((proc.stdout + proc.stderr).splitlines()[-60:])
        pytest.fail(f"torchrun failed (rc={proc.returncode}):\n{tail}")


@pytest.fixture(scope="module")
def reference():
    model = TinyLlama()
    model.load_state_dict(reference_state())
    return train(model, make_batches(STEPS, BATCH, TinyConfig()))


@pytest.fixture(scope="module")
def blt_reference():
    model = blt_model()
    model.load_state_dict(blt_reference_state())
    return train(model, make_byte_batches(STEPS, BATCH))


@pytest.fixture(scope="module")
def single_checkpoint(tmp_path_factory):
    """1-process run: 2 steps, save, 2 more steps (the losses every resume must match)."""
    out = tmp_path_factory.mktemp("single")
    batches = make_batches(4, BATCH, TinyConfig())
    model = TinyLlama()
    model.load_state_dict(reference_state())
    opt = make_optimizer(model)
    first = train(model, batches[:2], opt=opt)
    save_sharded(out / "ckpt", model, opt, extra={"step": 2})
    continued = train(model, batches[2:], opt=opt)
    return {"path": out / "ckpt", "first": first, "continued": continued}


@pytest.fixture(scope="module")
def dist_out(tmp_path_factory, single_checkpoint):
    out = tmp_path_factory.mktemp("dist")
    _launch(out, *MAIN_SCENARIOS, f"checkpoint={single_checkpoint['path']}")
    return out


@pytest.mark.parametrize("scenario", ["fsdp", "hsdp", "tp", "tp_sp", "fsdp_tp",
                                      "fsdp_ac_full", "fsdp_ac_selective"])
def test_parallel_loss_matches_single_process(dist_out, reference, scenario):
    losses = read_json(dist_out / f"{scenario}.json")["losses"]
    torch.testing.assert_close(torch.tensor(losses), torch.tensor(reference), **EXACT)


def test_fsdp_bf16_tracks_fp32(dist_out, reference):
    losses = read_json(dist_out / "fsdp_bf16.json")["losses"]
    torch.testing.assert_close(torch.tensor(losses), torch.tensor(reference), rtol=0, atol=3e-2)
    assert losses != reference  # bf16 really ran


@pytest.mark.parametrize("scenario", ["fsdp_fp8", "fsdp_fp8_rowwise", "tp_fp8"])
def test_float8_tracks_fp32(dist_out, reference, scenario):
    result = read_json(dist_out / f"{scenario}.json")
    assert "float8 linears: 14" in result["summary"]  # 7 per block x 2; head excluded
    torch.testing.assert_close(torch.tensor(result["losses"]), torch.tensor(reference), rtol=0, atol=0.1)


@pytest.mark.parametrize("scenario", ["blt_fsdp", "blt_tp", "blt_fsdp_tp"])
def test_blt_parallel_loss_matches_single_process(dist_out, blt_reference, scenario):
    """The tiny BLT: FSDP over all blocks, TP on the latent blocks, and both (2-D)."""
    losses = read_json(dist_out / f"{scenario}.json")["losses"]
    torch.testing.assert_close(torch.tensor(losses), torch.tensor(blt_reference), **EXACT)


def test_blt_float8_selective_ac_tracks_fp32(dist_out, blt_reference):
    result = read_json(dist_out / "blt_fsdp_fp8_ac.json")
    assert "activation checkpointing: selective" in result["summary"]
    torch.testing.assert_close(torch.tensor(result["losses"]), torch.tensor(blt_reference), rtol=0, atol=0.1)


def test_meta_init_on_shards_trains(dist_out):
    losses = read_json(dist_out / "fsdp_init.json")["losses"]
    assert all(torch.isfinite(torch.tensor(losses)))
    assert 3.5 < losses[0] < 6.0  # about log(64) = 4.16 for a sane init


def test_checkpoint_two_ranks_to_one(dist_out, single_checkpoint):
    ckpt = read_json(dist_out / "checkpoint.json")
    torch.testing.assert_close(torch.tensor(ckpt["fsdp_first"]), torch.tensor(single_checkpoint["first"]), **EXACT)
    torch.testing.assert_close(torch.tensor(ckpt["fsdp_continued"]), torch.tensor(single_checkpoint["continued"]), **EXACT)
    # Load the 2-rank FSDP checkpoint (model + optimizer) on one process and continue.
    model = TinyLlama()
    opt = make_optimizer(model)
    extra = load_sharded(dist_out / "ckpt_fsdp", model, opt)
    assert extra == {"step": 2}
    saved = torch.load(dist_out / "ckpt_fsdp_full.pt")
    for key, value in full_state(model).items():
        torch.testing.assert_close(value, saved[key], rtol=0, atol=0)
    continued = train(model, make_batches(4, BATCH, TinyConfig())[2:], opt=opt)
    torch.testing.assert_close(torch.tensor(continued), torch.tensor(single_checkpoint["continued"]), **EXACT)


@pytest.mark.parametrize("mesh", ["fsdp", "tp"])
def test_checkpoint_one_to_two_ranks(dist_out, single_checkpoint, mesh):
    ckpt = read_json(dist_out / "checkpoint.json")
    assert ckpt[f"from_single_{mesh}_step"] == 2
    torch.testing.assert_close(
        torch.tensor(ckpt[f"from_single_{mesh}"]), torch.tensor(single_checkpoint["continued"]), **EXACT
    )


def test_2d_mesh_four_processes(tmp_path, reference):
    """dp_shard=2 x tp=2 (with and without sequence parallel): 4 processes on 2 cores."""
    _launch(tmp_path, "fsdp2_tp2", "fsdp2_tp2_sp", nproc=4)
    for scenario in ("fsdp2_tp2", "fsdp2_tp2_sp"):
        losses = read_json(tmp_path / f"{scenario}.json")["losses"]
        torch.testing.assert_close(torch.tensor(losses), torch.tensor(reference), **EXACT)


def test_compile_with_fsdp(tmp_path, reference):
    # A per-rank inductor cache kept across runs (the first run compiles for ~1 minute).
    base = os.environ.get(
        "BLTX_TEST_INDUCTOR_DIR", str(Path(tempfile.gettempdir()) / f"bltx_inductor_{getpass.getuser()}")
    )
    _launch(tmp_path, "fsdp_compile", env={"BLTX_INDUCTOR_BASE": base})
    result = read_json(tmp_path / "fsdp_compile.json")
    assert "compiled blocks: 2" in result["summary"]
    torch.testing.assert_close(torch.tensor(result["losses"]), torch.tensor(reference), rtol=0, atol=1e-4)
