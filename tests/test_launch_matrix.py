"""Every launch layout trains through the real entry point and agrees with one process.

torchtitan-style integration matrix: each case launches `torchrun -m bltx.run
recipes/tiny.toml` with `--set` overrides (gloo, CPU) and compares its `metrics.jsonl` with
a one-process run of the same recipe: step-0 validation loss (same initial weights on
every layout), the first train losses (same windows in the same global batch), and the
mean patch length (global, not summed over TP ranks). Resharding resumes go through the
trainer's own checkpoints: save on one layout, continue on another, land on the
uninterrupted run's numbers. Learned chunking (recipes/learned_tiny.toml) runs FSDP and TP
against its own one-process run.

3-step runs keep the whole module to a few minutes on 2 cores; 4-process cases run once.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from helpers import ROOT

STEPS = 3
GLOBAL_BATCH = 8
BASE = [
    f"training.steps={STEPS}",
    "training.dtype=\"float32\"",
    "metrics.log_interval=1",
    "metrics.tensorboard=false",
    "metrics.progress_bar=false",
    f"eval.interval={STEPS}",
    "eval.steps=2",
    "checkpoint.interval=2",
    "checkpoint.keep_latest=3",
    "data.seq_len=128",
    "model.max_patches=64",
]

# Tolerances on train losses against one process: fp32 differs only in reduction order;
# compile reorders more; float8 quantises the latent's matmuls.
FP32, COMPILED, FLOAT8 = 1e-4, 1e-3, 0.05


def launch(dump: Path, nproc: int, *overrides: str, timeout: int = 600, recipe: str = "recipes/tiny.toml") -> list[dict]:
    """Run the real CLI (`torchrun` for nproc > 1); the rows of its metrics.jsonl."""
    args = ["-m", "bltx.run", recipe]
    sets = [*BASE, f"job.dump_dir=\"{dump}\"", *overrides]
    for s in sets:
        args += ["--set", s]
    if nproc > 1:
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone",
               f"--nproc_per_node={nproc}", *args]
    else:
        cmd = [sys.executable, *args]
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore",
           "TORCHINDUCTOR_CACHE_DIR": str(Path(tempfile.gettempdir()) / f"bltx_matrix_inductor_{os.getuid()}")}
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=timeout, env=env)
    if proc.returncode != 0:
        tail = "\n".join((proc.stdout + proc.stderr).splitlines()[-40:])
        pytest.fail(f"{' '.join(overrides)} on {nproc} processes failed (rc={proc.returncode}):\n{tail}")
    lines = (dump / "metrics.jsonl").read_text().splitlines()
    return [json.loads(line) for line in lines if line.strip()]


def train_rows(rows: list[dict]) -> dict[int, dict]:
    return {r["step"]: r for r in rows if r["split"] == "train"}


def val_rows(rows: list[dict]) -> dict[int, dict]:
    return {r["step"]: r for r in rows if r["split"] == "val"}


@pytest.fixture(scope="module")
def work(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("matrix")


@pytest.fixture(scope="module")
def reference(work) -> list[dict]:
    """One process, the global batch of every layout below."""
    return launch(work / "single", 1, f"data.batch_size={GLOBAL_BATCH}")


def assert_matches(rows: list[dict], reference: list[dict], tol: float) -> None:
    ref_val, got_val = val_rows(reference), val_rows(rows)
    # Same seed -> the same full initial weights on every layout: step 0 agrees to fp32
    # rounding of the validation sum (float8 quantises the forward, hence its tolerance).
    assert got_val[0]["val_loss"] == pytest.approx(ref_val[0]["val_loss"], abs=FLOAT8 if tol == FLOAT8 else 1e-6)
    assert got_val[0]["val_mean_patch_length"] == pytest.approx(ref_val[0]["val_mean_patch_length"], abs=1e-9)
    ref_train, got_train = train_rows(reference), train_rows(rows)
    assert sorted(got_train) == list(range(1, STEPS + 1))
    for step in range(1, STEPS + 1):
        assert got_train[step]["loss"] == pytest.approx(ref_train[step]["loss"], abs=tol), step
        # Global patch statistics: the same windows, counted once per data shard.
        assert got_train[step]["mean_patch_length"] == pytest.approx(
            ref_train[step]["mean_patch_length"], abs=1e-9), step


# (id, processes, overrides, tolerance). data.batch_size is per data-parallel rank.
MATRIX = [
    ("ddp", 2, ["parallelism.dp_replicate=2", "parallelism.dp_shard=1", "data.batch_size=4"], FP32),
    # HSDP: FSDP within each of 2 replicas, gradients all-reduced across them (4 processes).
    ("hsdp", 4, ["parallelism.dp_replicate=2", "parallelism.dp_shard=2", "data.batch_size=2"], FP32),
    ("tp", 2, ["parallelism.dp_shard=1", "parallelism.tp=2"], FP32),
    ("tp_sequence_parallel", 2, ["parallelism.dp_shard=1", "parallelism.tp=2", "parallelism.sequence_parallel=true"], FP32),
    ("fsdp_compile_ac_full", 2, ["parallelism.dp_shard=2", "data.batch_size=4", "compile.enable=true",
                                 "activation_checkpoint.mode=\"full\""], COMPILED),
    # (Compile with TP is left to the FSDP row's per-block compile: a whole-model compile
    # over TP DTensors takes minutes on 2 CPU cores.)
    ("tp_ac_selective", 2, ["parallelism.dp_shard=1", "parallelism.tp=2",
                            "activation_checkpoint.mode=\"selective\""], FP32),
    ("fsdp_float8_tensorwise", 2, ["parallelism.dp_shard=2", "data.batch_size=4", "float8.enable=true"], FLOAT8),
    ("tp_float8_rowwise", 2, ["parallelism.dp_shard=1", "parallelism.tp=2", "float8.enable=true",
                              "float8.recipe=\"rowwise\""], FLOAT8),
]


@pytest.mark.parametrize("name,nproc,overrides,tol", MATRIX, ids=[m[0] for m in MATRIX])
def test_layout_matches_one_process(work, reference, name, nproc, overrides, tol):
    rows = launch(work / name, nproc, *overrides)
    assert_matches(rows, reference, tol)


@pytest.fixture(scope="module")
def fsdp(work) -> list[dict]:
    """FSDP over 2 ranks; its step-2 checkpoint is resumed on one process below."""
    return launch(work / "fsdp", 2, "parallelism.dp_shard=2", "data.batch_size=4")


def test_fsdp_matches_one_process(fsdp, reference):
    assert_matches(fsdp, reference, FP32)


@pytest.fixture(scope="module")
def two_d(work) -> list[dict]:
    """4 processes: FSDP 2 x TP 2 (the 2-D mesh), run once for the matrix and the resume."""
    return launch(work / "fsdp_tp", 4, "parallelism.dp_shard=2", "parallelism.tp=2", "data.batch_size=4")


def test_2d_fsdp_tp_matches_one_process(two_d, reference):
    assert_matches(two_d, reference, FP32)


def _resume(work: Path, name: str, saved_in: str, nproc: int, *overrides: str) -> list[dict]:
    ckpt = work / saved_in / "checkpoints" / "step_00000002"
    assert (ckpt / "COMPLETE").is_file(), f"{saved_in} wrote no step-2 checkpoint"
    return launch(work / name, nproc, f"checkpoint.load_path=\"{ckpt}\"", *overrides)


def _assert_continues(rows: list[dict], reference: list[dict]) -> None:
    """A resumed run starts at step 3 (the saved step + 1) with the saved data position
    and lands on the uninterrupted run's step-3 loss."""
    got = train_rows(rows)
    assert sorted(got) == [3]
    ref = train_rows(reference)
    assert got[3]["loss"] == pytest.approx(ref[3]["loss"], abs=FP32)
    assert got[3]["mean_patch_length"] == pytest.approx(ref[3]["mean_patch_length"], abs=1e-9)
    assert val_rows(rows)[3]["val_loss"] == pytest.approx(val_rows(reference)[3]["val_loss"], abs=FP32)


def test_resume_fsdp2_checkpoint_on_one_process(work, reference, fsdp):
    rows = _resume(work, "fsdp_to_single", "fsdp", 1, f"data.batch_size={GLOBAL_BATCH}")
    _assert_continues(rows, reference)


def test_resume_one_process_checkpoint_on_tp2(work, reference):
    rows = _resume(work, "single_to_tp", "single", 2, "parallelism.dp_shard=1", "parallelism.tp=2")
    _assert_continues(rows, reference)


def test_resume_2d_checkpoint_on_fsdp2(work, reference, two_d):
    rows = _resume(work, "2d_to_fsdp", "fsdp_tp", 2, "parallelism.dp_shard=2", "data.batch_size=4")
    _assert_continues(rows, reference)


# Learned chunking: boundaries come from the router on the byte states, inside the forward.
LEARNED = "recipes/learned_tiny.toml"
# With the ratio loss on: its boundary rate is the whole batch's on every FSDP rank (the
# plan's dp_root); with each rank's own rate, step 2 was off by ~2e-3 in loss.
LEARNED_MATRIX = [
    ("learned_fsdp", ["parallelism.dp_shard=2", "data.batch_size=4"]),
    ("learned_tp", ["parallelism.dp_shard=1", "parallelism.tp=2"]),
]


@pytest.fixture(scope="module")
def learned_reference(work) -> list[dict]:
    return launch(work / "learned_single", 1, f"data.batch_size={GLOBAL_BATCH}", recipe=LEARNED)


@pytest.mark.parametrize("name,overrides", LEARNED_MATRIX, ids=[m[0] for m in LEARNED_MATRIX])
def test_learned_chunking_layout_matches_one_process(work, learned_reference, name, overrides):
    rows = launch(work / name, 2, *overrides, recipe=LEARNED)
    assert_matches(rows, learned_reference, FP32)


# Starting from pretrained weights: [init] from a tiny random HF BltForCausalLM folder
# (each FSDP rank reads its own rows of each safetensors tensor), with a frozen latent and
# with LoRA (frozen and trained parameters in one FSDP unit), against one process.
INIT_MATRIX = [
    ("init_freeze_fsdp", ["training.freeze=[\"latent.*\"]"]),
    ("init_lora_fsdp", ["adapter={type=\"lora\", rank=4}", "optimizer.lr=0.05"]),
]


@pytest.fixture(scope="module")
def hf_dir(work) -> Path:
    pytest.importorskip("transformers")
    from helpers import save_tiny_hf

    return save_tiny_hf(work / "hf_tiny")


@pytest.mark.parametrize("name,overrides", INIT_MATRIX, ids=[m[0] for m in INIT_MATRIX])
def test_init_from_hf_on_fsdp_matches_one_process(work, hf_dir, name, overrides):
    init = [f"init.path=\"{hf_dir}\"", *overrides]
    single = launch(work / f"{name}_single", 1, f"data.batch_size={GLOBAL_BATCH}", *init)
    rows = launch(work / name, 2, "parallelism.dp_shard=2", "data.batch_size=4", *init)
    assert_matches(rows, single, FP32)


# A byteified subword LM (issue 23): stage 1 of recipes/byteify (the source's blocks frozen
# in the latent, tokenizer boundaries, the teacher pass and its KL) from a tiny random HF
# Llama with its own BPE tokenizer, on FSDP and on TP against one process.
BYTEIFY = "recipes/byteify/stage1.toml"
BYTEIFY_MATRIX = [
    ("byteify_fsdp", ["parallelism.dp_shard=2", "data.batch_size=4"]),
    ("byteify_tp", ["parallelism.dp_shard=1", "parallelism.tp=2"]),
]


@pytest.fixture(scope="module")
def byteify_source(work) -> list[str]:
    pytest.importorskip("transformers")
    from helpers import save_source_folder

    folder, _ = save_source_folder(work / "byteify_source")
    # No stage 1a run to start from: the predictor starts at its seeded init.
    return [f"model.source=\"{folder}\"", f"model.latent.path=\"{folder}\"", "init.path=\"\""]


@pytest.fixture(scope="module")
def byteify_reference(work, byteify_source) -> list[dict]:
    return launch(work / "byteify_single", 1, f"data.batch_size={GLOBAL_BATCH}", *byteify_source, recipe=BYTEIFY)


@pytest.mark.parametrize("name,overrides", BYTEIFY_MATRIX, ids=[m[0] for m in BYTEIFY_MATRIX])
def test_byteified_layout_matches_one_process(work, byteify_source, byteify_reference, name, overrides):
    rows = launch(work / name, 2, *overrides, *byteify_source, recipe=BYTEIFY)
    assert_matches(rows, byteify_reference, FP32)
