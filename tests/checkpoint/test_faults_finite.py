"""Non-finite state through the CLI (issue 25, items 1 and 8): a checkpoint is marked finite
only if its tensors are, pruning never deletes the newest finite one, eval/generate refuse a
non-finite one in one line, resume falls back past it, and every loaded part (an entropy
model's weights) with NaN/inf is refused in one line."""

import json

import pytest
import torch

from bltx.run import main
from helpers import ROOT, TINY_BLT, TINY_ENTROPY_LM, one_line, run_cli, write_recipe

# A recipe plugin standing in for an applied update that overflowed: after step 7 one
# weight is NaN, so every later step has a NaN gradient norm and is skipped.
POISON_PLUGIN = """
import torch
from bltx.train import trainer

_step = trainer.Trainer.train_step


def poisoned_step(self):
    out = _step(self)
    if self.step == 7:
        with torch.no_grad():
            next(self.model.parameters()).fill_(float("nan"))
    return out


trainer.Trainer.train_step = poisoned_step
"""


def finite_flags(run) -> dict[int, bool]:
    ckpts = run / "checkpoints"
    return {int(p.name[5:]): json.loads((p / "meta.json").read_text())["finite"]
            for p in sorted(ckpts.iterdir()) if p.name.startswith("step_")}


@pytest.fixture(scope="module")
def diverged(tmp_path_factory):
    """Skip mode, 10 steps, a save every 2, keep_latest=1; weights go NaN after step 7."""
    folder = tmp_path_factory.mktemp("diverged")
    (folder / "poison_steps.py").write_text(POISON_PLUGIN)
    recipe = write_recipe(folder, training={"steps": 10, "on_nonfinite": "skip"},
                          checkpoint={"interval": 2, "keep_latest": 1}, job={"plugins": ["poison_steps"]})
    proc = run_cli(str(recipe), env={"PYTHONPATH": f"{ROOT}:{folder}"})
    assert proc.returncode == 0, proc.stderr
    assert "step 8: non-finite" in proc.stdout
    return folder, recipe


def test_skip_mode_marks_nan_weights_non_finite_and_keeps_the_newest_finite(diverged):
    folder, _ = diverged
    # step_10 is the most recent save (keep_latest=1), step_6 the newest finite one: kept.
    assert finite_flags(folder / "run") == {6: True, 10: False}


@pytest.mark.parametrize("task", ["eval", "generate"])
def test_eval_and_generate_refuse_a_non_finite_checkpoint(diverged, tmp_path, capsys, task):
    folder, _ = diverged
    recipe = write_recipe(tmp_path, checkpoint={"load_path": str(folder / "run" / "checkpoints" / "step_00000010")})
    capsys.readouterr()
    assert main([str(recipe), "--set", f"job.task={task}", "--set", "generate.max_bytes=4"]) == 2
    assert "holds non-finite weights or optimizer state" in one_line(capsys)


def test_resume_falls_back_to_the_newest_finite_checkpoint(diverged, tmp_path, capsys):
    import shutil

    folder, _ = diverged
    shutil.copytree(folder / "run", tmp_path / "run")
    recipe = write_recipe(tmp_path, training={"steps": 8, "on_nonfinite": "skip"},
                          checkpoint={"interval": 2, "keep_latest": 1})
    capsys.readouterr()
    assert main([str(recipe)]) == 0
    out = capsys.readouterr()
    said = out.out + out.err  # the trainer's log line
    assert "step_00000010 holds non-finite" in said and "falling back to step_00000006" in said
    assert "at step 6" in out.out
    assert finite_flags(tmp_path / "run")[8] is True  # without the poison, steps 7-8 stay finite


def test_a_nan_in_the_optimizer_state_alone_marks_the_checkpoint_non_finite(tmp_path):
    from bltx.config import load_recipe
    from bltx.train.trainer import Trainer

    trainer = Trainer(load_recipe(write_recipe(tmp_path, training={"steps": 1})))
    trainer.train_step()
    moments = next(iter(trainer.optimizer.state.values()))
    moments["exp_avg_sq"].view(-1)[0] = float("inf")
    trainer.save_checkpoint()
    assert finite_flags(tmp_path / "run") == {1: False}


def nan_entropy_weights(tmp_path, what: str):
    """The bundled entropy model's weights with one NaN (or one tensor of another shape)."""
    from bltx.checkpoint import load_model_state

    state = load_model_state("bltx:tiny_shakespeare.entropy_lm.pt")
    key = next(k for k, v in state.items() if v.is_floating_point() and v.dim() == 2)
    if what == "nan":
        state[key] = state[key].clone()
        state[key].view(-1)[0] = float("nan")
    else:
        state[key] = torch.zeros(state[key].shape[0] + 1, state[key].shape[1])
    path = tmp_path / "entropy.pt"
    torch.save(state, path)
    return path, key


@pytest.mark.parametrize("what,expected", [("nan", "holds non-finite weights"), ("shape", "does not fit the entropy model")])
def test_an_entropy_model_with_nan_or_misshapen_weights_is_one_line(tmp_path, capsys, what, expected):
    weights, key = nan_entropy_weights(tmp_path, what)
    capsys.readouterr()
    rc = main([str(ROOT / "recipes" / "tiny.toml"), "--set", f"model.patcher.checkpoint=\"{weights}\"",
               "--set", f"job.dump_dir=\"{tmp_path / 'run'}\"", "--set", "training.steps=1"])
    assert rc == 2
    line = one_line(capsys)
    assert expected in line and key.removeprefix("entropy_model.") in line


def test_a_patcher_checkpoint_folder_with_nan_weights_is_one_line(diverged, tmp_path, capsys):
    folder, _ = diverged
    patcher = {"type": "entropy", "model": TINY_ENTROPY_LM["entropy_model"], "threshold": 1.0,
               "checkpoint": str(folder / "run" / "checkpoints" / "step_00000010")}
    recipe = write_recipe(tmp_path, model={**TINY_BLT, "patcher": patcher}, training={"steps": 1})
    capsys.readouterr()
    assert main([str(recipe)]) == 2
    assert "holds non-finite weights" in one_line(capsys)
