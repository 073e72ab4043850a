"""The divergence guard and resume-time recipe changes, through the CLI entry point
(`bltx.run.main`, in-process: the same code as `python -m bltx.run`).

- `optimizer.lr=1e3` drives the demo model to NaN: the run stops with one `error:` line
  naming the step, exit code 3, the non-finite update is never applied and every
  checkpoint left behind is finite; the console shows `nan` instead of dropping fields.
- `training.on_nonfinite="skip"` drops such updates, counts them and finishes.
- Resuming with another lr applies and announces it; resuming with a shape-preserving
  model change (heads) is refused in one line unless allowed.
"""

from __future__ import annotations

import json
import math

import pytest
import torch

from bltx.run import main
from bltx.checkpoint import load_model_state

SMALL = ["data.seq_len=128", "model.max_patches=64", "data.batch_size=4", "training.dtype=\"float32\"",
         "metrics.log_interval=1", "metrics.tensorboard=false", "metrics.progress_bar=false",
         "eval.interval=0"]


def run(tmp_path, *overrides: str) -> int:
    args = ["recipes/tiny.toml"]
    for s in [*SMALL, f"job.dump_dir=\"{tmp_path}\"", *overrides]:
        args += ["--set", s]
    return main(args)


def train_rows(tmp_path) -> list[dict]:
    rows = [json.loads(x) for x in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    return [r for r in rows if r["split"] == "train"]


def test_divergence_stops_before_the_update_and_keeps_finite_checkpoints(tmp_path, capsys):
    rc = run(tmp_path, "optimizer.lr=1e3", "lr_scheduler.warmup_steps=0", "training.steps=12",
             "checkpoint.interval=1", "checkpoint.keep_latest=2")
    out = capsys.readouterr()
    assert rc == 3
    errors = [x for x in out.err.splitlines() if x.startswith("error:")]
    assert len(errors) == 1 and "not finite" in errors[0]
    rows = train_rows(tmp_path)
    last = rows[-1]
    assert not math.isfinite(last["grad_norm"]) and last["step"] < 12
    assert f"step {last['step']}:" in errors[0]
    assert "gnorm nan" in out.out or "gnorm inf" in out.out  # shown, not dropped
    ckpts = sorted((tmp_path / "checkpoints").glob("step_*"))
    assert ckpts, "the steps before the divergence were saved"
    for ckpt in ckpts:
        assert int(ckpt.name[5:]) < last["step"]  # the diverged step is never saved
        assert all(torch.isfinite(v).all() for v in load_model_state(ckpt).values() if v.is_floating_point())


def test_skip_mode_drops_nonfinite_updates_and_finishes(tmp_path, capsys):
    rc = run(tmp_path, "optimizer.lr=1e3", "lr_scheduler.warmup_steps=0", "training.steps=8",
             "checkpoint.interval=0", "training.on_nonfinite=\"skip\"")
    assert rc == 0
    rows = train_rows(tmp_path)
    assert rows[-1]["step"] == 8 and rows[-1].get("skipped_steps", 0) >= 1
    ckpt = tmp_path / "checkpoints" / "step_00000008"
    assert all(torch.isfinite(v).all() for v in load_model_state(ckpt).values() if v.is_floating_point())


def test_resume_applies_a_new_lr_and_refuses_a_model_change(tmp_path, capsys):
    assert run(tmp_path, "training.steps=2", "checkpoint.interval=2", "lr_scheduler.warmup_steps=0") == 0
    capsys.readouterr()
    # Same shapes, other meaning: 4 heads of 16 -> 2 heads of 32 in the encoder.
    assert run(tmp_path, "training.steps=3", "lr_scheduler.warmup_steps=0", "model.encoder.n_heads=2") == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "model.encoder.n_heads" in err[0] and "allow_model_changes" in err[0]
    # An intended change: applied (the logged lr follows the new base lr) and announced.
    assert run(tmp_path, "training.steps=3", "lr_scheduler.warmup_steps=0", "optimizer.lr=1e-4") == 0
    out = capsys.readouterr().out
    assert "optimizer.lr" in out and "applied" in out
    rows = train_rows(tmp_path)
    assert rows[-1]["step"] == 3 and rows[-1]["lr"] <= 1e-4
