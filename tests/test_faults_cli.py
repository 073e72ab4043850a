"""Task failure modes end in one stderr line: exit 2 for bad input and system errors (disk
full, a pipe as the recipe, a dump folder that is a file), 130 for Ctrl-C. Through the CLI's
entry point (`bltx.run.main`), in-process to keep it fast."""

import errno
import os

import pytest
import torch

from bltx.checkpoint import manager as ck
from bltx.config import load_recipe
from bltx.run import main
from bltx.train.trainer import Trainer
from helpers import one_line, write_recipe


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A one-step run: its recipe and dump folder."""
    folder = tmp_path_factory.mktemp("trained")
    recipe = write_recipe(folder, training={"steps": 1}, checkpoint={"interval": 1})
    Trainer(load_recipe(recipe)).fit()
    return recipe


def test_a_fifo_as_recipe_is_refused_not_read(tmp_path, capsys):
    fifo = tmp_path / "recipe.toml"
    os.mkfifo(fifo)
    assert main([str(fifo)]) == 2
    assert "is not a regular file" in one_line(capsys)


@pytest.mark.parametrize("args,expected", [
    (["--dry-run", "--world-size", "-1"], "--world-size -1: must be >= 1"),
    (["--set", "job.dump_dir={file}"], "exists and is not a folder"),
    (["--set", "job.dump_dir={file}/sub"], "is a file; set job.dump_dir elsewhere"),
    (["--set", "generate.prompt=\udcff\udcfe", "--print-config"], "not valid UTF-8"),
])
def test_bad_launch_is_one_line(tmp_path, capsys, trained, args, expected):
    (tmp_path / "f").write_text("")
    args = [a.replace("{file}", str(tmp_path / "f")) for a in args]
    assert main([str(trained), *args]) == 2
    assert expected in one_line(capsys)


def full_disk(where: str, first):
    """A write that fails once `first` exists, as a full disk fails it: errno 28 from DCP's
    own writer, or the short write torch.save reports through its zip writer's position
    check (the text measured on a full tmpfs)."""
    import torch.distributed.checkpoint.filesystem as dcp_files

    if where == "dcp":
        real, owner, name = dcp_files._write_item, dcp_files, "_write_item"
        error = OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    else:
        real, owner, name = ck.save_rng, ck, "save_rng"
        error = RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 576 vs 534")

    def write(*args, **kwargs):
        if first.exists():
            raise error
        return real(*args, **kwargs)

    return owner, name, write


@pytest.mark.parametrize("where", ["dcp", "torch_save"])
def test_disk_full_during_a_save_is_one_line_removes_the_partial_save_and_resumes_after(tmp_path, capsys, monkeypatch, where):
    recipe = write_recipe(tmp_path, training={"steps": 4}, checkpoint={"interval": 2},
                          metrics={"tensorboard": True})
    ckpts = tmp_path / "run" / "checkpoints"
    owner, name, write = full_disk(where, ckpts / "step_00000002" / "COMPLETE")
    monkeypatch.setattr(owner, name, write)
    # A disk that is full reports little free space: what the message quotes.
    monkeypatch.setattr("bltx.checkpoint.dcp_io.shutil.disk_usage", lambda p: __import__("shutil")._ntuple_diskusage(1, 1, 0))
    assert main([str(recipe)]) == 2
    line = one_line(capsys)
    assert "cannot write checkpoint" in line and "step_00000004: no space left on device (0.0 MiB free" in line
    assert sorted(p.name for p in ckpts.iterdir()) == ["step_00000002"]  # no .tmp_ folder left
    monkeypatch.undo()  # space freed: the same command resumes and finishes
    assert main([str(recipe)]) == 0
    out = capsys.readouterr()
    assert "resumed from" in out.out and "at step 2" in out.out and "Traceback" not in out.err
    assert ck.CheckpointManager(tmp_path / "run").latest().name == "step_00000004"


def test_ctrl_c_during_generate_exits_130_with_one_line(capsys, monkeypatch, trained):
    import bltx.tasks.generate as task

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(task, "generate", interrupted)
    assert main([str(trained), "--set", "job.task=generate"]) == 130
    assert "interrupted" in one_line(capsys)


def test_generating_from_a_diverged_checkpoint_is_refused(tmp_path, capsys):
    recipe = write_recipe(tmp_path, training={"steps": 1})
    trainer = Trainer(load_recipe(recipe))
    with torch.no_grad():
        next(trainer.model.parameters()).fill_(float("nan"))
    trainer.checkpoints.save(1, trainer.model, trainer.optimizer, trainer.trainer_state(), finite=False)
    assert main([str(recipe), "--set", "job.task=generate"]) == 2
    assert "holds non-finite weights" in one_line(capsys)


# ---- issue 25, item 10 and the one-line cases: ranges and limits checked at load ------------


@pytest.mark.parametrize("override,expected", [
    ("job.seed=-1", "job.seed = -1: must be in [0, 4294967295]"),
    ("job.seed=4294967296", "job.seed = 4294967296: must be in"),
    ("parallelism.tp=0", "parallelism.tp = 0: must be >= 1"),
    ("parallelism.dp_shard=0", "parallelism.dp_shard = 0: must be >= 1, or -1"),
    ('job.dump_dir=""', "job.dump_dir = '': must name a folder"),
    ("x=" + "[" * 3000 + "]" * 3000, "nested too deeply"),
    ("a" + ".b" * 3000 + "=1", "nested more than 32 levels deep"),
])
def test_out_of_range_values_are_one_line_at_load(tmp_path, capsys, trained, override, expected):
    assert main([str(trained), "--set", override, "--set", f"job.dump_dir={tmp_path}/run"
                 if "dump_dir" not in override else "job.name=x"]) == 2
    assert expected in one_line(capsys)
    assert not (tmp_path / "run").exists() and not (tmp_path / "metrics.jsonl").exists()


def test_deep_includes_nested_values_and_folder_includes_are_one_line(tmp_path, capsys):
    for i in range(200):
        (tmp_path / f"r{i}.toml").write_text(f'include = ["r{i + 1}.toml"]\n' if i < 199 else "")
    assert main([str(tmp_path / "r0.toml"), "--print-config"]) == 2
    assert "includes nest more than 16 files deep" in one_line(capsys)
    (tmp_path / "nested.toml").write_text("x = " + "[" * 2000 + "]" * 2000 + "\n")
    assert main([str(tmp_path / "nested.toml"), "--print-config"]) == 2
    assert "values nested too deeply" in one_line(capsys)
    (tmp_path / "tables.toml").write_text("[a" + ".b" * 100 + "]\nc = 1\n")
    assert main([str(tmp_path / "tables.toml"), "--print-config"]) == 2
    assert "nested more than 32 levels deep" in one_line(capsys)
    (tmp_path / "folder.toml").mkdir()
    (tmp_path / "inc.toml").write_text('include = ["folder.toml"]\n')
    assert main([str(tmp_path / "inc.toml"), "--print-config"]) == 2
    assert "include 'folder.toml' is a folder" in one_line(capsys)


def test_not_found_messages_list_every_place_tried(tmp_path, capsys, monkeypatch):
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    recipe = write_recipe(tmp_path, data={"paths": ["missing.txt"]})
    assert main([str(recipe)]) == 2
    line = one_line(capsys)
    assert f"{work / 'missing.txt'} and {tmp_path / 'missing.txt'}" in line
    recipe = write_recipe(tmp_path, checkpoint={"load_path": "runs/none"})
    for task in ("train", "eval"):
        assert main([str(recipe), "--set", f"job.task={task}"]) == 2
        line = one_line(capsys)
        assert "checkpoint.load_path 'runs/none' not found" in line
        assert f"{work / 'runs/none'} and {tmp_path / 'runs/none'}" in line


def test_the_precomputed_variant_patches_with_the_calibrated_entropy_model(tmp_path):
    import shutil

    from bltx.config import load_recipe
    from helpers import ROOT

    shutil.copytree(ROOT / "recipes", tmp_path / "recipes")
    shutil.copytree(ROOT / "toml_configs", tmp_path / "toml_configs")
    with pytest.raises(Exception, match="calibrated.toml' not found"):  # step 2 has not run
        load_recipe(tmp_path / "recipes" / "tiny_precomputed.toml")
    # What step 2 (calibrate) writes: its own weights and threshold.
    (tmp_path / "toml_configs" / "patcher" / "calibrated.toml").write_text(
        '[model.patcher]\ntype = "entropy"\ncheckpoint = "runs/entropy_tiny/checkpoints/step_00001000"\n'
        'threshold = 1.75\n\n[model.patcher.model]\ntype = "transformer"\ndim = 64\nn_layers = 2\n'
        'n_heads = 4\nwindow = 256\n')
    patcher = load_recipe(tmp_path / "recipes" / "tiny_precomputed.toml").model["patcher"]
    assert patcher["checkpoint"] == "runs/entropy_tiny/checkpoints/step_00001000"
    assert patcher["threshold"] == 1.75
