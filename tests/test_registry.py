from dataclasses import dataclass

import pytest

import bltx
from bltx.errors import ConfigError
from bltx.registry import Registry, build, get_registry, register


@pytest.fixture
def fresh_kind():
    kind = "test_widget"
    Registry._by_kind.pop(kind, None)
    yield Registry.for_kind(kind)
    Registry._by_kind.pop(kind, None)


def _widget(reg):
    @reg.register("round")
    class Round:
        @dataclass
        class Config:
            radius: float = 1.0
            sides: int = 0
            tags: list[str] | None = None

        def __init__(self, cfg, **context):
            self.cfg, self.context = cfg, context

    return Round


def test_build_passes_config_and_context(fresh_kind):
    _widget(fresh_kind)
    w = build("test_widget", {"type": "round", "radius": 2}, scale=3)
    assert w.cfg.radius == 2.0 and isinstance(w.cfg.radius, float)
    assert w.context == {"scale": 3}


def test_duplicate_name_rejected(fresh_kind):
    _widget(fresh_kind)
    with pytest.raises(ValueError, match="already registered"):
        _widget(fresh_kind)


def test_unknown_type_lists_names_and_suggests(fresh_kind):
    _widget(fresh_kind)
    with pytest.raises(ConfigError) as err:
        build("test_widget", {"type": "rund"})
    msg = str(err.value)
    assert "unknown test_widget 'rund'" in msg
    assert "did you mean 'round'" in msg
    assert "registered: round" in msg


def test_unknown_key_lists_valid_keys(fresh_kind):
    _widget(fresh_kind)
    with pytest.raises(ConfigError) as err:
        build("test_widget", {"type": "round", "radios": 2})
    msg = str(err.value)
    assert "unknown key 'test_widget.radios'" in msg and "did you mean 'radius'" in msg
    assert "valid keys: radius, sides, tags" in msg


@pytest.mark.parametrize(
    "key,value,expected",
    [("radius", "big", "expected a number"), ("sides", 2.5, "expected an integer"),
     ("sides", True, "expected an integer"), ("tags", [1], "expected a string")],
)
def test_wrong_value_type_names_field(fresh_kind, key, value, expected):
    _widget(fresh_kind)
    with pytest.raises(ConfigError) as err:
        build("test_widget", {"type": "round", key: value}, where="model.widget")
    assert f"model.widget.{key}" in str(err.value) and expected in str(err.value)


def test_missing_type(fresh_kind):
    _widget(fresh_kind)
    with pytest.raises(ConfigError, match="missing 'type'.*round"):
        build("test_widget", {"radius": 1})


def test_builtin_patchers_registered():
    names = get_registry("patcher").names()
    for name in ("byte", "static", "space", "entropy"):
        assert name in names


def test_public_build_patcher():
    ids = bltx.bytes.encode("ab cd", bos=True)[None]
    starts = bltx.build("patcher", {"type": "static", "stride": 2})(ids)
    assert starts.tolist() == [[True, False, True, False, True, False]]


def test_unknown_kind():
    with pytest.raises(ConfigError, match="unknown component kind"):
        get_registry("pather")


def test_register_decorator_returns_class():
    @register("test_widget_two", "x")
    class X:
        pass

    assert get_registry("test_widget_two").get("x") is X
    Registry._by_kind.pop("test_widget_two")
