"""Starting from pretrained weights, through the real CLI: [init] from a tiny random HF
BltForCausalLM folder, training.freeze, export back with tools/convert_hf.py to-hf, checked
against HF's own logits and weights (issue 22's "Must show")."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

pytest.importorskip("transformers")

from helpers import ROOT, hf_logits, random_ids, run_cli, save_tiny_hf  # noqa: E402

ENV = {"OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}
QUIET = ["training.dtype=\"float32\"", "eval.interval=0", "metrics.tensorboard=false",
         "metrics.progress_bar=false", "metrics.log_interval=1", "data.seq_len=64", "data.batch_size=4"]


def train(dump: Path, hf_dir: Path | str, *overrides: str, steps: int = 1):
    args = ["recipes/tiny.toml"]
    for s in [*QUIET, f"training.steps={steps}", f"job.dump_dir=\"{dump}\"", f"init.path=\"{hf_dir}\"", *overrides]:
        args += ["--set", s]
    return run_cli(*args, env=ENV)


def ok(proc) -> str:
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-3000:]
    return proc.stdout + proc.stderr


def to_hf(src: Path, out: Path):
    return subprocess.run([sys.executable, "tools/convert_hf.py", "to-hf", str(src), str(out)], cwd=ROOT,
                          capture_output=True, text=True, timeout=300,
                          env={**os.environ, "PYTHONPATH": str(ROOT), **ENV})


def hf_state(folder: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return load_file(folder / "model.safetensors")


def one_error_line(proc, *needles: str) -> str:
    assert proc.returncode == 2, (proc.stdout + proc.stderr)[-2000:]
    lines = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr[-2000:]
    for needle in needles:
        assert needle in lines[0], lines[0]
    return lines[0]


@pytest.fixture(scope="module")
def hf_dir(tmp_path_factory) -> Path:
    return save_tiny_hf(tmp_path_factory.mktemp("hf") / "tiny_blt")


def test_init_one_step_export_gives_hf_logits(hf_dir, tmp_path):
    out = ok(train(tmp_path / "run", hf_dir, "optimizer.lr=1e-12"))
    assert f"model: from {hf_dir / 'config.json'} (replaces the recipe's [model])" in out
    assert "init: 100 tensors from" in out and "fresh optimizer at step 0" in out
    ok(to_hf(tmp_path / "run", tmp_path / "out"))
    ids = random_ids()
    ref = hf_logits(hf_dir, ids)
    assert ref.abs().max() > 1e-2
    torch.testing.assert_close(hf_logits(tmp_path / "out", ids), ref, rtol=0, atol=1e-4)
    # The run folder through bltx.load gives the same logits from bltx's own forward.
    import bltx

    model = bltx.load(tmp_path / "run")
    with torch.no_grad():
        torch.testing.assert_close(model(ids).logits, ref, rtol=0, atol=1e-4)


def test_freeze_latent_keeps_global_transformer_bitwise(hf_dir, tmp_path):
    ok(train(tmp_path / "run", hf_dir, "training.freeze=[\"latent.*\"]", "optimizer.lr=1e-2", steps=5))
    ok(to_hf(tmp_path / "run", tmp_path / "out"))
    before, after = hf_state(hf_dir), hf_state(tmp_path / "out")
    latent = [k for k in before if k.startswith("model.global_transformer.layers.")]
    decoder = [k for k in before if k.startswith("model.local_decoder.")]
    assert latent and decoder
    assert all(torch.equal(before[k], after[k]) for k in latent)
    assert sum(not torch.equal(before[k], after[k]) for k in decoder) > len(decoder) // 2
    # No optimizer state for frozen parameters.
    from bltx.checkpoint import find_checkpoint, saved_tensor_shapes

    opt = saved_tensor_shapes(find_checkpoint(tmp_path / "run"), prefix="optimizer.")
    assert any("decoder." in k for k in opt) and not any(".latent." in f".{k}" for k in opt)


def test_init_ignore_and_resume(hf_dir, tmp_path):
    run = tmp_path / "run"
    out = ok(train(run, hf_dir, "init.ignore=[\"decoder.layers.*\"]", "optimizer.lr=1e-12"))
    assert "left at their init" in out
    ok(to_hf(run, tmp_path / "out"))
    before, after = hf_state(hf_dir), hf_state(tmp_path / "out")
    assert not torch.equal(before["model.local_decoder.layers.0.mlp.up_proj.weight"],
                           after["model.local_decoder.layers.0.mlp.up_proj.weight"])
    torch.testing.assert_close(after["model.local_encoder.layers.0.mlp.up_proj.weight"],
                               before["model.local_encoder.layers.0.mlp.up_proj.weight"], rtol=0, atol=1e-9)
    # The run has a checkpoint now: it resumes from it, [init] is not applied again.
    again = ok(train(run, hf_dir, "init.ignore=[\"decoder.layers.*\"]", "optimizer.lr=1e-12", steps=2))
    assert "resumed from" in again and "init:" not in again


def test_bad_init_inputs_are_one_line_exit_2(hf_dir, tmp_path):
    import shutil

    one_error_line(train(tmp_path / "a", tmp_path / "nothing"), "does not exist")
    damaged = shutil.copytree(hf_dir, tmp_path / "damaged_config")
    (damaged / "config.json").write_text("{not json", encoding="utf-8")
    one_error_line(train(tmp_path / "b", damaged), "config.json is damaged")
    truncated = shutil.copytree(hf_dir, tmp_path / "damaged_weights")
    data = (truncated / "model.safetensors").read_bytes()
    (truncated / "model.safetensors").write_bytes(data[: len(data) // 2])
    one_error_line(train(tmp_path / "c", truncated), "model.safetensors")
    other = shutil.copytree(hf_dir, tmp_path / "llama")
    cfg = json.loads((other / "config.json").read_text())
    (other / "config.json").write_text(json.dumps({**cfg, "model_type": "llama"}))
    one_error_line(train(tmp_path / "d", other), "model_type is 'llama'")
    # A shape key given on the command line that the HF config fixes otherwise.
    one_error_line(train(tmp_path / "e", hf_dir, "model.latent.dim=64"), "model.latent.dim=64", "disagrees")
    # Weights of another shape: the HF run's checkpoint into the recipe's own tiny model.
    ok(train(tmp_path / "hfrun", hf_dir, "optimizer.lr=1e-12"))
    from bltx.checkpoint import load_model_state

    torch.save(load_model_state(tmp_path / "hfrun"), tmp_path / "hf_shaped.pt")
    for src in (tmp_path / "hfrun", tmp_path / "hf_shaped.pt"):
        one_error_line(train(tmp_path / f"f_{src.stem}", src), "does not fit the model", "shape mismatches")


def test_lora_run_exports_merged_and_matches_bltx(hf_dir, tmp_path):
    import bltx

    run = tmp_path / "run"
    ok(train(run, hf_dir, "adapter={type=\"lora\", rank=4}", "optimizer.lr=0.05", steps=3))
    ok(to_hf(run, tmp_path / "out"))
    ids = random_ids()
    model = bltx.load(run)  # adapters attached, not merged: the forward as trained
    assert model.recipe.adapter["type"] == "lora"
    trained_b = [p for n, p in model.named_parameters() if n.endswith("adapter.b")]
    assert trained_b and any(p.abs().max() > 0 for p in trained_b)
    with torch.no_grad():
        ours = model(ids).logits
    exported = hf_logits(tmp_path / "out", ids)
    torch.testing.assert_close(exported, ours, rtol=0, atol=1e-4)
    assert (exported - hf_logits(hf_dir, ids)).abs().max() > 1e-3  # the adapters did something


def test_bltx_load_every_kind_and_tasks_read_model_folders(hf_dir, tmp_path):
    import bltx

    ids = random_ids()
    ref = hf_logits(hf_dir, ids)
    convert = subprocess.run([sys.executable, "tools/convert_hf.py", "to-bltx", str(hf_dir), str(tmp_path / "conv")],
                             cwd=ROOT, capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
    ok(convert)
    ok(train(tmp_path / "run", tmp_path / "conv", "optimizer.lr=1e-12"))  # [init] from a converted folder
    from bltx.checkpoint import find_checkpoint

    for path in (hf_dir, tmp_path / "conv", tmp_path / "run", find_checkpoint(tmp_path / "run")):
        model = bltx.load(path)
        with torch.no_grad():
            torch.testing.assert_close(model(ids).logits, ref, rtol=0, atol=1e-4)
        score = model.score("To be, or not to be")
        assert score["bytes"] == 19 and score["bpb"] > 0
        assert isinstance(model.generate("ab", max_bytes=4), str)
    # eval.checkpoint names a HF folder: the folder's own model is evaluated.
    proc = run_cli("recipes/tiny.toml", "--set", "job.task=eval", "--set", f"eval.checkpoint=\"{hf_dir}\"",
                   "--set", f"job.dump_dir=\"{tmp_path / 'eval'}\"", "--set", "eval.steps=2",
                   "--set", "data.seq_len=64", env=ENV)
    assert f"eval {hf_dir}: bpb" in ok(proc)
