"""Resuming reproduces the uninterrupted run bit for bit (CPU, fp32): after SIGTERM in a
subprocess, after a crash between checkpoints, and from checkpoint.load_path."""

import os
import signal
import subprocess
import sys
import time

import pytest

from bltx.config import load_recipe
from bltx.train.trainer import Trainer
from helpers import ROOT, read_metrics, write_recipe

STEPS = 10

# A recipe plugin that only slows each step down (numerics untouched), so the signal
# reliably lands mid-run however fast the machine is.
SLOW_PLUGIN = """
import time
from bltx.train import trainer

_step = trainer.Trainer.train_step


def slow_step(self):
    out = _step(self)
    time.sleep(0.25)
    return out


trainer.Trainer.train_step = slow_step
"""


def losses(dump_dir) -> dict[int, float]:
    """step -> loss; a step logged twice (re-run after a crash) keeps its last value."""
    return {r["step"]: r["loss"] for r in read_metrics(dump_dir)}


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """The uninterrupted run."""
    folder = tmp_path_factory.mktemp("reference")
    Trainer(load_recipe(write_recipe(folder, training={"steps": STEPS}, checkpoint={"interval": 2}))).fit()
    result = losses(folder / "run")
    assert sorted(result) == list(range(1, STEPS + 1))
    return result


def test_sigterm_saves_and_the_resumed_run_matches_bitwise(tmp_path, reference):
    (tmp_path / "slow_steps.py").write_text(SLOW_PLUGIN)
    recipe = write_recipe(tmp_path, training={"steps": STEPS}, checkpoint={"interval": 100},
                          job={"plugins": ["slow_steps"]})
    env = {**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{tmp_path}"}
    cmd = [sys.executable, "-m", "bltx.run", str(recipe)]
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    metrics = tmp_path / "run" / "metrics.jsonl"
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None:
        if metrics.is_file() and len(metrics.read_text().splitlines()) >= 3:
            break
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    assert "stopped by SIGTERM" in out, out
    stopped_at = max(losses(tmp_path / "run"))
    assert stopped_at < STEPS, "the run finished before the signal; nothing was tested"
    assert (tmp_path / "run" / "checkpoints" / f"step_{stopped_at:08d}" / "COMPLETE").is_file()

    resumed = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert resumed.returncode == 0, resumed.stderr
    assert f"at step {stopped_at}" in resumed.stdout
    assert losses(tmp_path / "run") == reference  # exact float equality, every step


def test_crash_between_checkpoints_resumes_from_the_last_one(tmp_path, reference, monkeypatch):
    recipe = load_recipe(write_recipe(tmp_path, training={"steps": STEPS}, checkpoint={"interval": 2}))
    trainer = Trainer(recipe)
    real_step = trainer.train_step

    def crashing_step():
        if trainer.step == 5:  # steps 1..5 done, checkpoints at 2 and 4
            raise RuntimeError("simulated crash")
        return real_step()

    monkeypatch.setattr(trainer, "train_step", crashing_step)
    with pytest.raises(RuntimeError, match="simulated crash"):
        trainer.fit()
    resumed = Trainer(recipe)
    assert resumed.step == 4
    resumed.fit()
    assert losses(tmp_path / "run") == reference


def test_load_path_starts_a_new_run_from_another_runs_checkpoint(tmp_path, reference):
    first = tmp_path / "first"
    first.mkdir()
    recipe = write_recipe(first, training={"steps": STEPS}, checkpoint={"interval": 3, "keep_latest": 5})
    trainer = Trainer(load_recipe(recipe))
    while trainer.step < 6:  # the first run gets to step 6 and saves
        trainer.train_step()
    trainer.save_checkpoint()

    second = tmp_path / "second"
    second.mkdir()
    ckpt = first / "run" / "checkpoints" / "step_00000006"
    cont = Trainer(load_recipe(write_recipe(second, training={"steps": STEPS}, checkpoint={"load_path": str(ckpt)})))
    assert cont.step == 6 and cont.resumed_from == ckpt
    cont.fit()
    got = losses(second / "run")
    assert got == {s: reference[s] for s in range(7, STEPS + 1)}
