"""tools/show_patches.py: patches in the terminal and the entropy figure as a PNG."""

import pytest

pytest.importorskip("matplotlib")

from tools.show_patches import main  # noqa: E402
from helpers import write_recipe  # noqa: E402
from bltx.model.debug import tiny_table  # noqa: E402


def test_show_patches_with_a_checkpoint(tmp_path, capsys):
    from bltx.config import load_recipe
    from bltx.train.trainer import Trainer

    recipe = write_recipe(tmp_path, model=tiny_table(max_patches=64), training={"steps": 1},
                          checkpoint={"interval": 1})
    Trainer(load_recipe(recipe)).fit()
    capsys.readouterr()
    out = tmp_path / "p.png"
    text = "Daenerys Targaryen is in Game of Thrones"
    assert main(["--checkpoint", str(tmp_path / "run"), "--text", text, "--out", str(out)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].replace(" | ", "") == text
    assert out.stat().st_size > 1000


def test_show_patches_recipe_only_and_bad_input(tmp_path, capsys):
    recipe = write_recipe(tmp_path, model=tiny_table(patcher={"type": "static", "stride": 3}))
    assert main(["--recipe", str(recipe), "--text", "abcdefgh", "--out", str(tmp_path / "s.png")]) == 0
    assert capsys.readouterr().out.splitlines()[0] == "ab | cde | fgh"  # BOS is byte 0
    assert main(["--text", "x"]) == 2
    assert capsys.readouterr().err.count("\n") == 1
