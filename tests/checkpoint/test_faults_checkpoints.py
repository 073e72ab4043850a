"""Checkpoint faults through the CLI: a damaged newest checkpoint is detected and resume falls
back to the previous good one; payload files never execute (exit 2, one line); pruning keeps
what a run saves, even started with auto_resume=false in a used folder; interval=0 saves at
the end. One case runs `python -m bltx.run` in a subprocess, the rest call its entry point
in-process (same code, no interpreter start-up)."""

import os
import pickle
import shutil

import pytest
import torch

from bltx.checkpoint import manifest
from bltx.run import main
from helpers import TINY_BLT, TINY_ENTROPY_LM, Payload, flip_bytes, one_line, run_cli, write_recipe


def steps_saved(folder) -> list[int]:
    ckpts = folder / "run" / "checkpoints"
    return sorted(int(p.name[5:]) for p in ckpts.iterdir() if p.name.startswith("step_")) if ckpts.is_dir() else []


def damage(ckpt, kind: str) -> None:
    if kind == "distcp":  # random bytes inside the tensor data, size unchanged
        flip_bytes(next(ckpt.glob("*.distcp")), n=256)
    elif kind == "rng":
        rng = ckpt / "rng_rank0.pt"
        rng.write_bytes(rng.read_bytes()[:64])
    else:
        (ckpt / "meta.json").write_text("\x00garbage")


def test_cli_random_bytes_in_the_newest_distcp_fall_back_to_the_previous_checkpoint(tmp_path):
    recipe = write_recipe(tmp_path, training={"steps": 4}, checkpoint={"interval": 2, "keep_latest": 3})
    first = run_cli(str(recipe))
    assert first.returncode == 0, first.stderr
    damage(tmp_path / "run" / "checkpoints" / "step_00000004", "distcp")
    resumed = run_cli(str(recipe), "--set", "training.steps=6")
    assert resumed.returncode == 0, resumed.stderr
    said = resumed.stdout + resumed.stderr  # the notice goes to stderr, or to the trainer's log
    assert "step_00000004 failed verification" in said and "falling back to step_00000002" in said
    assert "step_00000002 at step 2" in resumed.stdout
    assert steps_saved(tmp_path)[-1] == 6


@pytest.fixture(scope="module")
def four_steps(tmp_path_factory):
    """A 4-step run with checkpoints at steps 2 and 4, trained once; tests work on copies."""
    folder = tmp_path_factory.mktemp("four_steps")
    assert main([str(write_recipe(folder, training={"steps": 4}, checkpoint={"interval": 2, "keep_latest": 3}))]) == 0
    return folder / "run"


def copy_run(run, tmp_path, **sections):
    shutil.copytree(run, tmp_path / "run")
    return write_recipe(tmp_path, **sections)


@pytest.mark.parametrize("kind", ["rng", "meta"])
def test_truncated_rng_or_garbage_meta_fall_back(tmp_path, capsys, four_steps, kind):
    recipe = copy_run(four_steps, tmp_path, training={"steps": 4}, checkpoint={"interval": 2, "keep_latest": 3})
    damage(tmp_path / "run" / "checkpoints" / "step_00000004", kind)
    capsys.readouterr()
    assert main([str(recipe), "--set", "training.steps=5"]) == 0
    out = capsys.readouterr()
    assert "falling back to step_00000002" in out.err + out.out and "at step 2" in out.out


def test_an_explicit_damaged_load_path_is_one_line(tmp_path, capsys, four_steps):
    shutil.copytree(four_steps, tmp_path / "source")
    ckpt = tmp_path / "source" / "checkpoints" / "step_00000002"
    damage(ckpt, "distcp")
    capsys.readouterr()
    assert main([str(write_recipe(tmp_path, checkpoint={"load_path": str(ckpt)}))]) == 2
    assert "failed verification" in one_line(capsys)


def test_auto_resume_false_in_a_used_folder_keeps_what_it_saves(tmp_path, capsys):
    recipe = write_recipe(tmp_path, training={"steps": 10}, checkpoint={"interval": 10, "keep_latest": 1})
    assert main([str(recipe)]) == 0
    assert steps_saved(tmp_path) == [10]
    assert main([str(recipe), "--set", "training.steps=4", "--set", "checkpoint.auto_resume=false",
                 "--set", "checkpoint.interval=2"]) == 0
    assert steps_saved(tmp_path) == [4]  # the newest save survives; the older run's step 10 goes


def test_interval_0_saves_only_at_the_end(tmp_path):
    recipe = write_recipe(tmp_path, training={"steps": 3}, checkpoint={"interval": 0})
    assert main([str(recipe)]) == 0
    assert steps_saved(tmp_path) == [3]


@pytest.fixture
def planted(tmp_path, four_steps):
    """A copy of a trained checkpoint (entropy_lm) to plant payloads in, and the marker file
    a payload would create."""
    shutil.copytree(four_steps, tmp_path / "source")
    return tmp_path / "source" / "checkpoints" / "step_00000002", tmp_path / "MARKER"


def plant(ckpt, marker, where: str) -> None:
    if where == "rng":
        torch.save(Payload(marker), ckpt / "rng_rank0.pt")
    else:
        (ckpt / ".metadata").write_bytes(pickle.dumps(Payload(marker)))
    manifest.write_manifest(ckpt, 2)  # a forger rewrites the manifest too


@pytest.mark.parametrize("where", ["rng", "metadata"])
def test_payload_in_load_path_does_not_run(tmp_path, capsys, planted, where):
    ckpt, marker = planted
    plant(ckpt, marker, where)
    capsys.readouterr()
    recipe = write_recipe(tmp_path, checkpoint={"load_path": str(ckpt)})
    assert main([str(recipe)]) == 2
    assert ("not a bltx RNG file" if where == "rng" else "references posix.system") in one_line(capsys)
    assert not marker.exists()


def test_payload_as_eval_checkpoint_does_not_run(tmp_path, capsys, planted):
    ckpt, marker = planted
    plant(ckpt, marker, "metadata")
    capsys.readouterr()
    recipe = write_recipe(tmp_path, eval={"checkpoint": str(ckpt)})
    assert main([str(recipe), "--set", "job.task=eval"]) == 2
    assert "references posix.system" in one_line(capsys)
    assert not marker.exists()


@pytest.mark.parametrize("kind", ["folder", "pt"])
def test_payload_as_patcher_checkpoint_does_not_run(tmp_path, capsys, planted, kind):
    ckpt, marker = planted
    if kind == "folder":
        plant(ckpt, marker, "metadata")
        weights = ckpt
    else:
        weights = tmp_path / "entropy.pt"
        torch.save({"w": Payload(marker)}, weights)
    capsys.readouterr()
    patcher = {"type": "entropy", "model": TINY_ENTROPY_LM["entropy_model"], "threshold": 1.0,
               "checkpoint": str(weights)}
    recipe = write_recipe(tmp_path, model={**TINY_BLT, "patcher": patcher})
    assert main([str(recipe)]) == 2
    line = one_line(capsys)
    assert "references posix.system" in line or "cannot read state dict file" in line
    assert not marker.exists()
    assert os.listdir(tmp_path)  # the folder is intact, nothing ran
