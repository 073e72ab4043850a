"""Checkpoints: atomic saves, pruning, clear errors for foreign or incomplete checkpoints,
and `load_model_state` for code that only wants weights."""

import pytest
import torch

from bltx.checkpoint import CheckpointManager, export_model_state, find_checkpoint, load_model_state
from bltx.checkpoint import manager as ck
from bltx.errors import CheckpointError
from helpers import run_cli, write_recipe


def small_model(width=8):
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(4, width), torch.nn.Linear(width, 3))


def save(manager, step, model, opt=None):
    return manager.save(step, model, opt, {"json": f'{{"step": {step}}}'})


def test_crash_mid_save_leaves_the_previous_checkpoint_loadable(tmp_path, monkeypatch):
    model = small_model()
    opt = torch.optim.AdamW(model.parameters())
    manager = CheckpointManager(tmp_path, keep_latest=2)
    save(manager, 2, model, opt)
    good = {k: v.clone() for k, v in model.state_dict().items()}

    real_save = ck.dcp.save

    def dying_save(state, checkpoint_id):
        real_save(state, checkpoint_id=checkpoint_id)  # files written...
        raise OSError("disk full")  # ...then the process dies before the marker

    monkeypatch.setattr(ck.dcp, "save", dying_save)
    with torch.no_grad():
        model[0].weight.add_(1.0)
    with pytest.raises(CheckpointError, match="disk full"):  # one line; the partial save removed
        save(manager, 4, model, opt)
    monkeypatch.setattr(ck.dcp, "save", real_save)

    assert not (tmp_path / "checkpoints" / ".tmp_step_00000004").exists()
    assert manager.latest().name == "step_00000002"
    fresh = small_model()
    state = manager.load(manager.latest(), fresh, torch.optim.AdamW(fresh.parameters()), {"json": ""})
    assert state == {"json": '{"step": 2}'}
    assert all(torch.equal(fresh.state_dict()[k], v) for k, v in good.items())

    save(manager, 6, model, opt)  # the next good save sweeps the leftovers
    assert not (tmp_path / "checkpoints" / ".tmp_step_00000004").exists()


def test_only_the_latest_k_are_kept_and_a_step_can_be_saved_again(tmp_path):
    model = small_model()
    manager = CheckpointManager(tmp_path, keep_latest=2)
    for step in (1, 2, 3, 4):
        save(manager, step, model)
    assert [p.name for _, p in ck.complete_checkpoints(manager.folder)] == ["step_00000003", "step_00000004"]
    save(manager, 4, model)  # a resumed run reaching the same step replaces it in place
    assert manager.latest().name == "step_00000004"


def test_checkpoint_of_another_model_shape_is_a_one_line_error(tmp_path):
    manager = CheckpointManager(tmp_path)
    save(manager, 1, small_model(8))
    with pytest.raises(CheckpointError) as info:
        manager.load(manager.latest(), small_model(16), None, {"json": ""})
    msg = str(info.value)
    assert "is from another model" in msg and "saved [8, 4], model [16, 4]" in msg and "\n" not in msg


def test_incomplete_or_missing_checkpoints_are_refused(tmp_path):
    partial = tmp_path / "step_00000005"
    partial.mkdir()
    (partial / ".metadata").write_bytes(b"")
    with pytest.raises(CheckpointError, match="incomplete"):
        find_checkpoint(partial)
    with pytest.raises(CheckpointError, match="does not exist"):
        find_checkpoint(tmp_path / "nope")
    with pytest.raises(CheckpointError, match="no complete checkpoint"):
        find_checkpoint(tmp_path / "step_00000005" / "..")


def test_load_model_state_reads_folders_dump_dirs_and_pt_files(tmp_path):
    model = small_model()
    save(CheckpointManager(tmp_path), 3, model, torch.optim.AdamW(model.parameters()))
    for where in (tmp_path, tmp_path / "checkpoints", tmp_path / "checkpoints" / "step_00000003"):
        state = load_model_state(where)
        assert state.keys() == model.state_dict().keys()
        assert all(torch.equal(state[k], v) for k, v in model.state_dict().items())
    out = export_model_state(tmp_path, tmp_path / "w.pt", dtype="bfloat16")
    half = load_model_state(out)
    assert half["0.weight"].dtype == torch.bfloat16


def test_resuming_with_another_model_shape_exits_2_with_one_line(tmp_path):
    first = tmp_path / "a"
    first.mkdir()
    proc = run_cli(str(write_recipe(first, training={"steps": 1}, checkpoint={"interval": 1})))
    assert proc.returncode == 0, proc.stderr
    other = {"type": "entropy_lm", "entropy_model": {"type": "transformer", "dim": 16, "n_layers": 1, "n_heads": 2}}
    second = tmp_path / "b"
    second.mkdir()
    recipe = write_recipe(second, model=other, checkpoint={"load_path": str(first / "run")})
    proc = run_cli(str(recipe))
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: checkpoint ") and "another model" in lines[0]
