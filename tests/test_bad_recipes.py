"""Every bad-recipe case ends with exactly one line on stderr and exit code 2."""

from pathlib import Path

import pytest

from helpers import FIXTURES, assert_one_clean_line, run_cli

BAD = sorted((FIXTURES / "bad_recipes").glob("*.toml"))


def expectations(path: Path) -> list[str]:
    return [
        line.split("# expect:", 1)[1].strip()
        for line in path.read_text().splitlines()
        if line.startswith("# expect:")
    ]


@pytest.mark.parametrize("path", BAD, ids=[p.stem for p in BAD])
def test_bad_recipe_fixture(path):
    expected = expectations(path)
    assert expected, f"{path.name} has no '# expect:' line"
    assert_one_clean_line(run_cli(str(path)), *expected)


def test_missing_recipe_file(tmp_path):
    assert_one_clean_line(run_cli(str(tmp_path / "nope.toml")), "recipe file not found")


def test_bad_override():
    good = FIXTURES / "recipes" / "minimal.toml"
    assert_one_clean_line(run_cli(str(good), "--set", "training.steps=lots", "--print-config"),
                          "training.steps = 'lots': expected an integer")
    assert_one_clean_line(run_cli(str(good), "--set", "training", "--print-config"),
                          "expected KEY=VALUE")


def test_print_config_shows_merged_result():
    good = FIXTURES / "recipes" / "minimal.toml"
    proc = run_cli(str(good), "--set", "training.steps=7", "--print-config")
    assert proc.returncode == 0, proc.stderr
    assert "steps = 7" in proc.stdout and "[model.patcher]" in proc.stdout
