"""Noised-input bpb (bltx/eval/noise.py) and the FLOP-matched comparison tool."""

import json

import pytest
import torch

import bltx
from bltx.eval.noise import add_noise, noised_bpb
from helpers import TINY_BLT, write_recipe


def test_noises():
    text = b"Hello World, hello again."
    assert add_noise(text, "uppercase") == text.upper()
    assert add_noise(text, "clean") == text
    assert add_noise(text, "random_case", 1.0) == text.swapcase()
    assert add_noise(text, "char_drop", 1.0) == b""
    assert add_noise(text, "repetition", 1.0) == bytes(b for b in text for _ in range(2))
    assert add_noise(text, "random_case", 0.5, seed=3) == add_noise(text, "random_case", 0.5, seed=3)
    assert add_noise(text, "random_case", 0.5).lower() == text.lower()
    with pytest.raises(bltx.ConfigError):
        add_noise(text, "shuffle")


def test_noised_bpb_runs_on_any_model():
    torch.set_num_threads(1)
    torch.manual_seed(0)
    model = bltx.build_model(TINY_BLT)
    res = noised_bpb(model, b"To be, or not to be: that is the question. " * 8, seq_len=64, batch_size=2)
    assert set(res) == {"clean", "random_case", "char_drop", "repetition", "uppercase"}
    assert all(r["bpb"] > 0 and r["mean_patch_length"] == pytest.approx(4.0, rel=0.1) for r in res.values())


def test_compare_tool_writes_table_json_and_plot(tmp_path, capsys):
    pytest.importorskip("matplotlib")
    from tools.compare import main

    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    a = write_recipe(tmp_path / "a", model=TINY_BLT)
    b = write_recipe(tmp_path / "b", model={"type": "byte_transformer", "dim": 32, "n_layers": 1, "n_heads": 2})
    out = tmp_path / "out"
    assert main(["--recipes", str(a), str(b), "--flops", "3e9", "--out", str(out),
                 "--eval-batches", "1", "--evals", "1"]) == 0
    runs = json.loads((out / "compare.json").read_text())["runs"]
    assert [r["model"] for r in runs] == ["blt", "byte_transformer"]
    for r in runs:
        # Equal budgets: steps * bytes per step * FLOPs per byte within one step of 3e9.
        per_step = r["train_flops"] / r["steps"]
        assert 3e9 - per_step < r["train_flops"] <= 3e9 or r["steps"] == 1
        assert r["val_bpb"] > 0 and r["wall_s"] > 0
    assert "| run |" in (out / "compare.md").read_text()
    assert (out / "compare.png").stat().st_size > 1000
    assert main(["--recipes", str(a)]) == 2
