"""Resume past any damaged checkpoint, with or without a manifest (issue 25, item 4): a
checkpoint that fails any check (a damaged legacy one, an empty manifest file list, a FIFO
or a link in the folder, a malformed trainer state) is skipped on auto-resume with one
warning and the newest good one is taken; named explicitly, it is one error line (exit 2).
Through the CLI's entry point, in-process."""

import json
import os
import shutil

import pytest

from bltx.config import load_recipe
from bltx.run import main
from bltx.train.trainer import Trainer
from helpers import one_line, write_recipe

SECTIONS = {"training": {"steps": 5}, "checkpoint": {"interval": 2, "keep_latest": 3}}


@pytest.fixture(scope="module")
def four_steps(tmp_path_factory):
    folder = tmp_path_factory.mktemp("four_steps")
    assert main([str(write_recipe(folder, training={"steps": 4}, checkpoint={"interval": 2, "keep_latest": 3}))]) == 0
    return folder / "run"


def newest(tmp_path):
    return tmp_path / "run" / "checkpoints" / "step_00000004"


def damage(ckpt, kind: str, outside) -> None:
    distcp = next(ckpt.glob("*.distcp"))
    if kind == "legacy_truncated":  # written before manifests, then truncated
        (ckpt / "manifest.json").unlink()
        os.truncate(distcp, distcp.stat().st_size // 2)
    elif kind == "empty_manifest":  # a manifest that lists nothing verifies nothing
        (ckpt / "manifest.json").write_text(json.dumps({"format": 1, "step": 4, "files": []}))
        os.truncate(distcp, distcp.stat().st_size // 2)
    elif kind == "fifo":  # opening it would block the load forever
        (ckpt / "meta.json").unlink()
        os.mkfifo(ckpt / "meta.json")
    elif kind == "fifo_legacy":
        (ckpt / "manifest.json").unlink()
        os.mkfifo(ckpt / "extra.distcp")
    elif kind == "link_out":  # same content, but read from outside the folder
        shutil.copy(ckpt / "rng_rank0.pt", outside)
        (ckpt / "rng_rank0.pt").unlink()
        (ckpt / "rng_rank0.pt").symlink_to(outside)


KINDS = {
    "legacy_truncated": "cannot load checkpoint",
    "empty_manifest": "does not list .metadata",
    "fifo": "meta.json is not a regular file",
    "fifo_legacy": "extra.distcp is not a regular file",
    "link_out": "rng_rank0.pt is a symbolic link",
}


@pytest.mark.parametrize("kind", list(KINDS))
def test_a_damaged_newest_checkpoint_is_skipped_with_one_warning(tmp_path, capsys, four_steps, kind):
    shutil.copytree(four_steps, tmp_path / "run")
    damage(newest(tmp_path), kind, tmp_path / "elsewhere.pt")
    recipe = write_recipe(tmp_path, **SECTIONS)
    capsys.readouterr()
    assert main([str(recipe)]) == 0
    out = capsys.readouterr()
    said = out.out + out.err
    skipped = [ln for ln in said.splitlines() if "falling back to step_00000002" in ln]
    assert len(skipped) == 1 and KINDS[kind] in skipped[0] and "step_00000004" in skipped[0], said
    assert "at step 2" in out.out


@pytest.mark.parametrize("kind", list(KINDS))
def test_the_same_checkpoint_named_explicitly_is_one_line(tmp_path, capsys, four_steps, kind):
    shutil.copytree(four_steps, tmp_path / "source")
    ckpt = tmp_path / "source" / "checkpoints" / "step_00000004"
    damage(ckpt, kind, tmp_path / "elsewhere.pt")
    capsys.readouterr()
    assert main([str(write_recipe(tmp_path, checkpoint={"load_path": str(ckpt)}))]) == 2
    assert KINDS[kind] in one_line(capsys)


BAD_STATES = {
    "not JSON": ("{step: 4", "not valid JSON"),
    "missing key": (json.dumps({"step": 4}), "'scheduler.last_epoch' is missing"),
    "wrong type": (None, "'sampler.cursor' is '12', not a count"),
    "negative step": (None, "'step' is -3, not a count"),
}


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A trainer after 2 steps (saved as step 2) to write bad trainer states with."""
    folder = tmp_path_factory.mktemp("bad_state")
    trainer = Trainer(load_recipe(write_recipe(folder, **SECTIONS)))
    trainer.train_step()
    trainer.train_step()
    trainer.save_checkpoint()
    return trainer, folder / "run"


def save_bad_state(trainer, case: str, folder):
    text, _ = BAD_STATES[case]
    if text is None:
        state = json.loads(trainer.trainer_state()["json"])
        if case == "wrong type":
            state["sampler"]["cursor"] = "12"
        else:
            state["step"] = -3
        text = json.dumps(state)
    manager = type(trainer.checkpoints)(folder, keep_latest=5)
    return manager.save(4, trainer.model, trainer.optimizer, {"json": text}, trainer.recipe_toml)


@pytest.mark.parametrize("case", list(BAD_STATES))
def test_a_malformed_trainer_state_is_skipped_on_resume_and_one_line_when_named(tmp_path, capsys, trained, case):
    trainer, run = trained
    shutil.copytree(run, tmp_path / "run")
    bad = save_bad_state(trainer, case, tmp_path / "run")
    kept = shutil.copytree(bad, tmp_path / "kept" / bad.name)  # the resumed run re-saves step 4
    recipe = write_recipe(tmp_path, **SECTIONS)
    capsys.readouterr()
    assert main([str(recipe)]) == 0
    out = capsys.readouterr()
    said = out.out + out.err
    assert "malformed trainer state" in said and BAD_STATES[case][1] in said and "falling back to step_00000002" in said
    assert "at step 2" in out.out
    assert not any(p.name.startswith("step_-") for p in (tmp_path / "run" / "checkpoints").iterdir())
    capsys.readouterr()
    named = tmp_path / "named"
    named.mkdir()
    assert main([str(write_recipe(named, checkpoint={"load_path": str(kept)}))]) == 2
    assert BAD_STATES[case][1] in one_line(capsys)
