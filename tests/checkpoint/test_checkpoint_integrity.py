"""Checkpoints verify themselves (manifest of sizes and sha256), resume falls back to the
newest good one, pruning follows this run's saves, and no file is unpickled beyond DCP's
own index classes. In-process and fast; the CLI cases are in test_faults_*.py."""

import json
import os
import pickle

import pytest
import torch

from bltx.checkpoint import CheckpointManager, load_model_state, manifest, saved_tensor_shapes
from bltx.errors import CheckpointError
from helpers import Payload, flip_bytes


def small_model():
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.Linear(8, 3))


def save(manager, step, model, opt=None, finite=True):
    return manager.save(step, model, opt, {"json": f'{{"step": {step}}}'}, finite=finite)


def names(manager):
    return sorted(p.name for p in manager.folder.iterdir() if p.name.startswith("step_"))


def test_manifest_lists_every_file_and_verifies(tmp_path):
    manager = CheckpointManager(tmp_path)
    path = save(manager, 1, small_model())
    listed = manifest.manifest_files(path)
    assert listed == {p.name for p in path.iterdir()} - {"manifest.json", "COMPLETE"}
    assert {".metadata", "meta.json", "rng_rank0.pt"} <= listed
    assert manifest.problem(path) is None
    assert json.loads((path / "meta.json").read_text())["finite"] is True


@pytest.mark.parametrize("damage", ["flip_distcp", "truncate_rng", "garbage_meta", "extra_file", "garbage_manifest"])
def test_a_damaged_newest_checkpoint_is_skipped_and_explicit_use_refused(tmp_path, damage):
    reports = []
    manager = CheckpointManager(tmp_path, keep_latest=3, log=reports.append)
    model = small_model()
    save(manager, 1, model)
    newest = save(manager, 2, model)
    if damage == "flip_distcp":
        flip_bytes(next(newest.glob("*.distcp")))
    elif damage == "truncate_rng":
        rng = newest / "rng_rank0.pt"
        rng.write_bytes(rng.read_bytes()[:100])
    elif damage == "garbage_meta":
        (newest / "meta.json").write_text("{not json")
    elif damage == "extra_file":
        (newest / "planted.pt").write_bytes(b"x")
    else:
        (newest / "manifest.json").write_text("garbage")
    assert manager.latest().name == "step_00000001"
    assert len(reports) == 1 and "step_00000002 failed verification" in reports[0] and "\n" not in reports[0]
    with pytest.raises(CheckpointError, match="failed verification"):
        manager.load(newest, small_model(), None, {"json": ""})
    assert load_model_state(tmp_path).keys() == model.state_dict().keys()  # the run folder: falls back


def test_no_good_checkpoint_at_all_is_an_error_not_a_fresh_start(tmp_path):
    manager = CheckpointManager(tmp_path, log=lambda _: None)
    path = save(manager, 1, small_model())
    flip_bytes(path / ".metadata", at=10, n=8)
    with pytest.raises(CheckpointError, match="none of the 1 checkpoints"):
        manager.latest()


def test_legacy_checkpoint_without_manifest_loads_with_a_notice(tmp_path):
    reports = []
    manager = CheckpointManager(tmp_path, log=reports.append)
    model = small_model()
    path = save(manager, 1, model)
    (path / "manifest.json").unlink()
    (path / "rng_rank0.pt").write_bytes(pickle.dumps((1, 2, 3)))  # old pickled format
    state = manager.load(manager.latest(), small_model(), None, {"json": ""})
    assert state == {"json": '{"step": 1}'}
    assert any("no manifest" in r for r in reports) and any("not bit-exact" in r for r in reports)


def test_pruning_keeps_what_this_run_saved_and_the_newest_finite(tmp_path):
    model = small_model()
    earlier = CheckpointManager(tmp_path, keep_latest=2)
    save(earlier, 50, model)
    save(earlier, 100, model)
    run = CheckpointManager(tmp_path, keep_latest=2)  # e.g. auto_resume=false, same folder
    save(run, 4, model)
    assert names(run) == ["step_00000004", "step_00000100"]
    save(run, 8, model)
    assert names(run) == ["step_00000004", "step_00000008"]
    save(run, 12, model, finite=False)
    save(run, 16, model, finite=False)
    # Newest two saves plus the newest finite one (step 8) survive.
    assert names(run) == ["step_00000008", "step_00000012", "step_00000016"]


def test_rng_payload_does_not_run(tmp_path):
    marker = tmp_path / "MARKER"
    manager = CheckpointManager(tmp_path)
    path = save(manager, 1, small_model())
    torch.save(Payload(marker), path / "rng_rank0.pt")
    with pytest.raises(CheckpointError, match="failed verification"):
        manager.load(path, small_model(), None, {"json": ""})
    manifest.write_manifest(path, 1)  # an attacker can rewrite the manifest too
    with pytest.raises(CheckpointError, match="not a bltx RNG file"):
        manager.load(path, small_model(), None, {"json": ""})
    assert not marker.exists()


def test_metadata_payload_does_not_run(tmp_path):
    marker = tmp_path / "MARKER"
    path = save(CheckpointManager(tmp_path), 1, small_model())
    (path / ".metadata").write_bytes(pickle.dumps(Payload(marker)))
    manifest.write_manifest(path, 1)
    loaders = (saved_tensor_shapes, load_model_state,
               lambda p: CheckpointManager(tmp_path).load(p, small_model(), None, {"json": ""}))
    for load in loaders:
        with pytest.raises(CheckpointError, match="references posix.system"):
            load(path)
    assert not marker.exists()


def test_payload_inside_a_distcp_value_does_not_run(tmp_path):
    """DCP's default planner unpickles non-tensor values with weights_only=False."""
    marker = tmp_path / "MARKER"
    model = small_model()
    manager = CheckpointManager(tmp_path)
    path = manager.save(1, model, None, {"json": Payload(marker)})
    assert not marker.exists()  # saving pickles it; only loading would run it
    with pytest.raises(CheckpointError, match="not plain data"):
        manager.load(path, small_model(), None, {"json": ""})
    assert not marker.exists()
