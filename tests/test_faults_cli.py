"""Task failure modes end in one stderr line: exit 2 for bad input and system errors (disk
full, a pipe as the recipe, a dump folder that is a file), 130 for Ctrl-C. Through the CLI's
entry point (`bltx.run.main`), in-process to keep it fast."""

import errno
import os

import pytest
import torch

from bltx.config import load_recipe
from bltx.run import main
from bltx.train import checkpoint as ck
from bltx.train.trainer import Trainer
from test_train_generic_model import write_recipe


def one_line(capsys) -> str:
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), lines
    return lines[0]


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
    monkeypatch.setattr("bltx.dcp_io.shutil.disk_usage", lambda p: __import__("shutil")._ntuple_diskusage(1, 1, 0))
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
