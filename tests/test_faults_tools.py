"""The tools a user runs, on hostile or bad input (issue 25, item 7 and the tool cases):
a checkpoint's saved recipe never imports plugins (the tool names the one to pass with
--plugin), and convert_hf.py / show_patches.py end in one line, exit 2."""

import os
import subprocess
import sys

import pytest
import torch

from bltx.checkpoint import manifest
from bltx.model.debug import tiny_table
from helpers import ROOT, write_recipe

PLUGIN = 'from pathlib import Path\nPath(__file__).with_name("RAN").write_text("imported")\n'


def tool(name: str, *args: str, extra_path=None):
    path = f"{ROOT}{os.pathsep}{extra_path}" if extra_path else str(ROOT)
    return subprocess.run([sys.executable, str(ROOT / "tools" / name), *args], cwd=ROOT, capture_output=True,
                          text=True, timeout=300, env={**os.environ, "PYTHONPATH": path})


def one_error(proc) -> str:
    lines = [ln for ln in proc.stderr.strip().splitlines() if not ln.startswith("W1")]  # torch's own warnings
    assert proc.returncode == 2 and len(lines) == 1 and lines[0].startswith("error: "), proc.stderr
    return lines[0]


@pytest.fixture(scope="module")
def planted(tmp_path_factory):
    """A trained checkpoint whose saved recipe lists a plugin that leaves a mark when imported
    (manifest rewritten too, as a forger would)."""
    from bltx.config import load_recipe
    from bltx.train.trainer import Trainer

    folder = tmp_path_factory.mktemp("planted")
    Trainer(load_recipe(write_recipe(folder, model=tiny_table(max_patches=64), training={"steps": 1},
                                     checkpoint={"interval": 1}))).fit()
    (folder / "mark_plugin.py").write_text(PLUGIN)
    ckpt = folder / "run" / "checkpoints" / "step_00000001"
    saved = (ckpt / "recipe.toml").read_text()
    (ckpt / "recipe.toml").write_text(saved.replace("plugins = []", 'plugins = ["mark_plugin"]', 1))
    manifest.write_manifest(ckpt, 1)
    return folder, ckpt


def test_show_patches_never_imports_a_checkpoints_plugins(planted):
    folder, ckpt = planted
    proc = tool("show_patches.py", "--checkpoint", str(ckpt), "--text", "hello there", "--out",
                str(folder / "p.png"), extra_path=folder)
    line = one_error(proc)
    assert "bltx never imports plugins named by a saved recipe" in line and "--plugin mark_plugin" in line
    assert not (folder / "RAN").exists()
    # Named by the user, it is imported and the tool runs.
    proc = tool("show_patches.py", "--checkpoint", str(ckpt), "--text", "hello there", "--out",
                str(folder / "p.png"), "--plugin", "mark_plugin", extra_path=folder)
    assert proc.returncode == 0, proc.stderr
    assert (folder / "RAN").exists()


def test_show_patches_bad_output_path_is_one_line(tmp_path):
    recipe = write_recipe(tmp_path, model=tiny_table(patcher={"type": "static", "stride": 3}))
    (tmp_path / "file").write_text("")
    line = one_error(tool("show_patches.py", "--recipe", str(recipe), "--text", "abc", "--out", str(tmp_path / "file" / "p.png")))
    assert str(tmp_path / "file") in line


@pytest.mark.parametrize("case,expected", [
    ("garbled_config", "not a valid JSON file"),
    ("garbage_weights", "not a torch.save file of plain tensors"),
    ("nan_weights", "holds non-finite weights"),
    ("misshapen_weights", "does not fit its model"),
])
def test_convert_hf_bad_input_is_one_line(tmp_path, capsys, case, expected):
    sys.path.insert(0, str(ROOT / "tools"))
    from convert_hf import main

    import bltx
    from bltx.interop.hf import save_bltx_dir

    src = tmp_path / "src"
    if case == "garbled_config":
        src.mkdir()
        (src / "config.json").write_text('{"model_type": "blt"')
        direction = "to-bltx"
    else:
        torch.manual_seed(0)
        save_bltx_dir(bltx.build_model(tiny_table()), src)
        direction = "to-hf"
        state = torch.load(src / "model.pt", weights_only=True)
        key = next(k for k, v in state.items() if v.dim() == 2)
        if case == "garbage_weights":
            (src / "model.pt").write_bytes(b"not a tensor file")
        elif case == "nan_weights":
            state[key].view(-1)[0] = float("nan")
            torch.save(state, src / "model.pt")
        else:
            state[key] = torch.zeros(state[key].shape[0] + 1, state[key].shape[1])
            torch.save(state, src / "model.pt")
    capsys.readouterr()
    assert main([direction, str(src), str(tmp_path / "out")]) == 2
    # (torchao may print a loader notice when transformers imports it: not bltx's line)
    lines = [ln for ln in capsys.readouterr().err.strip().splitlines() if "torchao" not in ln]
    assert len(lines) == 1 and lines[0].startswith("error: ") and expected in lines[0], lines
