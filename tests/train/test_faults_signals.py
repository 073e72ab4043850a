"""Signals and shared folders through the real CLI (issue 25, items 2, 3 and 9): SIGTERM
under torchrun saves at the very next step whatever metrics.log_interval is (also when only
one rank gets it), SIGINT saves then exits 130, and a second run in a dump folder in use is
refused in one line naming the folder and the holder; a dead holder's lock is taken over."""

import os
import signal
import subprocess
import sys
import time

import pytest

from bltx.run import main
from helpers import ROOT, write_recipe

# Slows steps down (numerics untouched) so signals land mid-run, and tells the test that
# training has started and which pid each rank has.
SLOW_PLUGIN = """
import os
import time
from pathlib import Path
from bltx.train import trainer

_step = trainer.Trainer.train_step


def slow_step(self):
    out = _step(self)
    time.sleep(0.2)
    if self.step == 2:
        (self.dump_dir / f"started_rank{os.environ.get('RANK', '0')}").write_text(str(os.getpid()))
    return out


trainer.Trainer.train_step = slow_step
"""

LONG = 100_000  # steps: never reached; the log interval is as long, so no log step comes


def start(tmp_path, nproc: int, **sections):
    (tmp_path / "slow_steps.py").write_text(SLOW_PLUGIN)
    recipe = write_recipe(tmp_path, training={"steps": LONG}, job={"plugins": ["slow_steps"]},
                          checkpoint={"interval": 0}, metrics={"log_interval": LONG}, **sections)
    env = {**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{tmp_path}", "OMP_NUM_THREADS": "1",
           "PYTHONWARNINGS": "ignore"}
    launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}"] if nproc > 1 else [sys.executable]
    proc = subprocess.Popen([*launcher, "-m", "bltx.run", str(recipe)], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    run = tmp_path / "run"
    deadline = time.time() + 180
    # Non-empty, not just present: a rank may be caught between creating its file and writing it.
    while not all((run / f"started_rank{r}").is_file() and (run / f"started_rank{r}").stat().st_size
                  for r in range(nproc)):
        if proc.poll() is not None or time.time() > deadline:
            proc.kill()
            out, err = proc.communicate()
            pytest.fail(f"the run did not start (rc={proc.returncode}):\n{out[-2000:]}\n{err[-2000:]}")
        time.sleep(0.05)
    return proc, recipe, [int((run / f"started_rank{r}").read_text()) for r in range(nproc)]


def saved_steps(tmp_path) -> list[int]:
    ckpts = tmp_path / "run" / "checkpoints"
    return sorted(int(p.name[5:]) for p in ckpts.iterdir() if p.name.startswith("step_") and (p / "COMPLETE").is_file())


@pytest.mark.parametrize("target", ["torchrun", "rank1"])
def test_sigterm_under_torchrun_saves_at_the_next_step(tmp_path, target):
    proc, _, pids = start(tmp_path, 2)
    t0 = time.time()
    # torchrun forwards SIGTERM to every worker; a scheduler may also reach one rank first.
    os.kill(proc.pid if target == "torchrun" else pids[1], signal.SIGTERM)
    out, err = proc.communicate(timeout=120)
    took = time.time() - t0
    steps = saved_steps(tmp_path)
    assert len(steps) == 1 and 2 <= steps[0] < LONG, (steps, err[-3000:])
    said = out + err
    # Rank 0 logs; signalled alone, rank 1 still makes it stop at the same step.
    why = "SIGTERM" if target == "torchrun" else "a signal on another rank"
    assert f"stopped by {why} at step {steps[0]}" in said, said[-3000:]
    assert took < 30, f"{took:.1f}s: past torchrun's grace period"
    if target == "rank1":  # no launcher shutdown involved: every rank exits 0
        assert proc.returncode == 0, said[-3000:]


def test_second_run_is_refused_then_sigint_saves_and_exits_130(tmp_path, capsys):
    proc, recipe, pids = start(tmp_path, 1)
    try:
        capsys.readouterr()
        assert main([str(recipe), "--set", "job.plugins=[]"]) == 2
        line = capsys.readouterr().err.strip()
        assert line.startswith("error: job.dump_dir") and str(tmp_path / "run") in line, line
        assert f"in use by another run (pid {pids[0]} on" in line, line
    finally:
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    steps = saved_steps(tmp_path)
    assert len(steps) == 1 and f"stopped by SIGINT at step {steps[0]}" in out
    assert "interrupted" not in err  # a clean stop, not the Ctrl-C-without-save line
    # The lock went with the run: the same command resumes (one more step).
    capsys.readouterr()
    assert main([str(recipe), "--set", "job.plugins=[]", "--set", f"training.steps={steps[0] + 1}"]) == 0
    out = capsys.readouterr()
    assert f"at step {steps[0]}" in out.out and "taking over" not in out.err


def test_a_dead_runs_lock_is_taken_over_with_a_notice(tmp_path, capsys):
    recipe = write_recipe(tmp_path, training={"steps": 1})
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "run.lock").write_text("pid 999999 on elsewhere since 2026-01-01 00:00:00\n")
    assert main([str(recipe)]) == 0
    err = capsys.readouterr().err
    assert "taking over" in err and "pid 999999" in err
    assert (tmp_path / "run" / "run.lock").read_text() == ""  # released cleanly
