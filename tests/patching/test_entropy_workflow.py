"""The entropy workflow end to end at toy size, each step through the command line:
1. train an entropy_lm, 2. calibrate the threshold (tools/calibrate_threshold.py),
3. train a BLT with the calibrated realtime entropy patcher, and with precomputed entropies.
Also: the bundled entropy model behind recipes/tiny.toml loads."""

import subprocess
import sys

import numpy as np
import torch

import bltx
from bltx.config import dumps_toml, load_recipe
from bltx.checkpoint import load_model_state
from helpers import CORPUS, ROOT, TINY_BLT, TINY_ENTROPY_LM, read_metrics, run_cli


def write(path, table, include=()):
    text = (f"include = {list(map(str, include))}\n" if include else "") + dumps_toml(table) + "\n"
    path.write_text(text)
    return path


def test_three_step_entropy_workflow(tmp_path):
    corpus = tmp_path / "corpus.txt"
    corpus.write_bytes(CORPUS.read_bytes()[:30_000])
    common = {
        "data": {"paths": [str(corpus)], "seq_len": 64, "batch_size": 4, "validation_fraction": 0.1},
        "metrics": {"log_interval": 5, "tensorboard": False, "progress_bar": False},
        "eval": {"interval": 0, "steps": 4},
        "lr_scheduler": {"warmup_steps": 2},
    }
    # 1. Train the entropy model.
    ent_dir = tmp_path / "entropy"
    ent_recipe = write(tmp_path / "entropy.toml", {
        **common, "job": {"dump_dir": str(ent_dir)}, "model": TINY_ENTROPY_LM,
        "optimizer": {"lr": 5e-3}, "training": {"steps": 15}, "checkpoint": {"interval": 15},
    })
    proc = run_cli(str(ent_recipe))
    assert proc.returncode == 0, proc.stderr
    assert (ent_dir / "checkpoints" / "step_00000015" / "COMPLETE").is_file()

    # 2. Calibrate the threshold for ~3 bytes per patch; writes a fragment and the weights.
    fragment, weights = tmp_path / "patcher.toml", tmp_path / "entropy_model.pt"
    proc = subprocess.run(
        [sys.executable, str(ROOT / "tools" / "calibrate_threshold.py"), str(ent_recipe), "--target", "3.0",
         "--out", str(fragment), "--weights-out", str(weights)],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    assert "mean patch length 3.0" in proc.stdout, proc.stdout
    blt = {k: v for k, v in TINY_BLT.items() if k != "patcher"}  # the fragment supplies it
    frag = load_recipe(write(tmp_path / "check.toml", {"model": blt}, include=[fragment]))
    patcher = frag.model["patcher"]
    assert patcher["type"] == "entropy" and patcher["checkpoint"] == str(weights) and patcher["threshold"] > 0
    assert patcher["model"] == TINY_ENTROPY_LM["entropy_model"]

    # 3. Train a BLT patching with it in realtime...
    blt_table = {**common, "job": {"dump_dir": str(tmp_path / "blt")}, "model": blt,
                 "training": {"steps": 3}, "checkpoint": {"enable": False}, "metrics": {"log_interval": 1}}
    blt_recipe = write(tmp_path / "blt.toml", blt_table, include=[fragment])
    proc = run_cli(str(blt_recipe))
    assert proc.returncode == 0, proc.stderr
    rows = read_metrics(tmp_path / "blt")
    assert len(rows) == 3 and all(1.5 < r["mean_patch_length"] < 8 for r in rows)

    # ... and from entropies precomputed once and stored beside the data.
    stored = tmp_path / "corpus.entropies.npy"
    pre = {**blt_table, "job": {"dump_dir": str(tmp_path / "blt_pre")},
           "data": {**common["data"], "entropies_path": str(stored)}}
    pre_recipe = write(tmp_path / "blt_pre.toml", pre, include=[fragment])
    proc = run_cli(str(pre_recipe), "--set", "job.task=precompute_entropies")
    assert proc.returncode == 0, proc.stderr
    assert stored.is_file()
    proc = run_cli(str(pre_recipe))
    assert proc.returncode == 0, proc.stderr
    pre_rows = read_metrics(tmp_path / "blt_pre")
    # The stored entropies saw more history before each window than realtime patching
    # does, so lengths differ a little; they are still the calibrated model's.
    assert len(pre_rows) == 3 and all(1.5 < r["mean_patch_length"] < 8 for r in pre_rows)

    # Training really patches from the stored values: all-zero entropies never exceed the
    # threshold, leaving only the forced starts at positions 0 and 1 (64 / 2 bytes).
    np.save(stored, np.zeros(np.load(stored).shape, dtype=np.float16))
    proc = run_cli(str(pre_recipe), "--set", "job.dump_dir=" + str(tmp_path / "blt_zero"),
                   "--set", "training.steps=1")
    assert proc.returncode == 0, proc.stderr
    assert read_metrics(tmp_path / "blt_zero")[0]["mean_patch_length"] == 32.0


def test_stale_precomputed_entropies_are_refused(tmp_path):
    corpus = tmp_path / "c.txt"
    corpus.write_bytes(b"abc " * 100)
    stored = tmp_path / "c.npy"
    np.save(stored, np.zeros(10, dtype=np.float16))
    recipe = write(tmp_path / "r.toml", {
        "job": {"dump_dir": str(tmp_path / "run")},
        "data": {"paths": [str(corpus)], "seq_len": 32, "entropies_path": str(stored)},
        "model": TINY_BLT,
    })
    proc = run_cli(str(recipe))
    assert proc.returncode == 2 and "recompute it" in proc.stderr


def test_bundled_entropy_model_is_small_and_loads_into_the_tiny_recipe(monkeypatch):
    monkeypatch.chdir(ROOT)  # the tiny recipe's patcher checkpoint path is repo-relative
    state = load_model_state("bltx:tiny_shakespeare.entropy_lm")
    assert (ROOT / "bltx/data/corpora/tiny_shakespeare.entropy_lm.pt").stat().st_size < 400_000
    recipe = load_recipe(ROOT / "recipes" / "tiny.toml")
    model = bltx.build_model(recipe)
    model.init_weights()  # loads the patcher's checkpoint
    loaded = model.patcher.entropy_model.state_dict()
    assert all(torch.equal(loaded[k], state["entropy_model." + k].float()) for k in loaded)
