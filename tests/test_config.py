import tomllib
from pathlib import Path

import pytest

from bltx.config import apply_overrides, load_raw, load_recipe, merge, parse_override, recipe_to_toml
from bltx.errors import ConfigError


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def test_merge_is_deep_and_later_wins():
    base = {"a": {"x": 1, "y": {"p": 1, "q": 2}}, "b": [1, 2]}
    over = {"a": {"y": {"q": 3}}, "b": [9]}
    assert merge(base, over) == {"a": {"x": 1, "y": {"p": 1, "q": 3}}, "b": [9]}
    assert base["a"]["y"]["q"] == 2  # inputs untouched


def test_merge_replaces_table_when_type_changes():
    base = {"patcher": {"type": "entropy", "threshold": 1.3}}
    assert merge(base, {"patcher": {"type": "static", "stride": 4}}) == {
        "patcher": {"type": "static", "stride": 4}
    }
    # Same type (or no type given) merges.
    assert merge(base, {"patcher": {"threshold": 2.0}})["patcher"] == {"type": "entropy", "threshold": 2.0}


def test_includes_relative_to_including_file_and_order(tmp_path):
    write(tmp_path / "frag/a.toml", "[training]\nsteps = 1\nmax_norm = 5.0\n")
    write(tmp_path / "frag/b.toml", 'include = ["a.toml"]\n[training]\nsteps = 2\n')
    write(tmp_path / "frag/c.toml", "[training]\nsteps = 3\n")
    recipe = write(
        tmp_path / "recipes/r.toml",
        'include = ["../frag/b.toml", "../frag/c.toml"]\n[job]\nname = "r"\n',
    )
    raw = load_raw(recipe)
    assert raw["training"] == {"steps": 3, "max_norm": 5.0}
    write(tmp_path / "recipes/r2.toml", 'include = ["../frag/c.toml", "../frag/b.toml"]\n')
    assert load_raw(tmp_path / "recipes/r2.toml")["training"]["steps"] == 2
    # The including file's own values win over its includes.
    write(tmp_path / "recipes/r3.toml", 'include = ["../frag/c.toml"]\n[training]\nsteps = 7\n')
    assert load_raw(tmp_path / "recipes/r3.toml")["training"]["steps"] == 7


def test_include_cycle(tmp_path):
    write(tmp_path / "a.toml", 'include = ["b.toml"]\n')
    write(tmp_path / "b.toml", 'include = ["a.toml"]\n')
    with pytest.raises(ConfigError, match="include cycle"):
        load_raw(tmp_path / "a.toml")


@pytest.mark.parametrize(
    "text,key,value",
    [
        ("training.steps=50", ["training", "steps"], 50),
        ("optimizer.lr=3e-4", ["optimizer", "lr"], 3e-4),
        ("compile.enable=true", ["compile", "enable"], True),
        ("job.name=hello", ["job", "name"], "hello"),
        ('job.name="a b"', ["job", "name"], "a b"),
        ("data.paths=['x', 'y']", ["data", "paths"], ["x", "y"]),
        ("model.patcher={type='static', stride=3}", ["model", "patcher"], {"type": "static", "stride": 3}),
    ],
)
def test_parse_override(text, key, value):
    assert parse_override(text) == (key, value)


def test_override_rejects_bad_forms():
    with pytest.raises(ConfigError, match="expected KEY=VALUE"):
        parse_override("training.steps")
    with pytest.raises(ConfigError, match="is a value, not a table"):
        apply_overrides({"training": {"steps": 3}}, ["training.steps.x=1"])


def test_load_recipe_applies_overrides_and_validates(tmp_path):
    r = write(tmp_path / "r.toml", "[training]\nsteps = 10\n[optimizer]\nlr = 1\n")
    recipe = load_recipe(r, ["training.steps=20", "training.dtype=bfloat16"])
    assert recipe.training.steps == 20 and recipe.training.dtype == "bfloat16"
    assert recipe.optimizer.lr == 1.0 and isinstance(recipe.optimizer.lr, float)
    assert recipe.source == str(r.resolve())
    with pytest.raises(ConfigError, match="training.dtype = 'fp16': expected one of"):
        load_recipe(r, ["training.dtype=fp16"])


def test_print_config_round_trips(tmp_path):
    r = write(tmp_path / "r.toml", '[job]\nname = "x\\"q"\n[training]\nsteps = 10\n')
    recipe = load_recipe(r)
    text = recipe_to_toml(recipe)
    again = tomllib.loads(text)
    assert again["job"]["name"] == 'x"q' and again["training"]["steps"] == 10
    assert load_recipe(write(tmp_path / "again.toml", text)).training == recipe.training


def test_optimizer_groups_without_optional_keys_round_trip(tmp_path):
    """An unset optional field inside a list of tables (a group's weight_decay) is left out
    of the TOML the trainer writes into its run folder, not a crash."""
    r = write(tmp_path / "r.toml", '[optimizer]\ngroups = [{match = ["latent.*"], lr_scale = 0.1}]\n')
    recipe = load_recipe(r)
    again = load_recipe(write(tmp_path / "again.toml", recipe_to_toml(recipe)))
    assert again.optimizer.groups == recipe.optimizer.groups


def test_a_component_table_is_parsed_once_and_again_only_when_changed(monkeypatch):
    """Recipe load turns each component table into a ComponentTable carrying its Config;
    build reuses it; a table changed in place after parsing is parsed afresh."""
    import copy

    import bltx
    from bltx import registry, schema
    from bltx.schema import ComponentTable

    recipe = bltx.load_recipe("recipes/tiny.toml")
    assert isinstance(recipe.model, ComponentTable) and recipe.model.parsed_config("model")[0]
    parses = []
    original = registry.to_dataclass
    monkeypatch.setattr(registry, "to_dataclass", lambda cls, table, where="": parses.append(where) or original(cls, table, where))
    bltx.build_model(recipe)
    # nothing parsed again on the way to the built model (attention backends are named by a
    # string, not a table: each built from its name)
    assert [w for w in parses if not w.endswith("attention")] == []
    parses.clear()
    table = copy.deepcopy(recipe.model)
    assert table == recipe.model and table.parsed_config("model")[0]
    table["max_patches"] = 64  # changed after parsing: its Config no longer describes it
    assert not table.parsed_config("model")[0]
    assert bltx.build_model(table).max_patches == 64 and parses[0] == "model"
    assert not recipe.model.parsed_config("patcher")[0]  # parsed as another kind: parse again
    assert dict(ComponentTable({"type": "byte"})) == {"type": "byte"}  # a plain copy carries no Config
    assert schema.ComponentTable({"type": "byte"}).parsed_config("patcher") == (False, None)
