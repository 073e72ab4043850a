"""Strict conversion of TOML tables into dataclass configs.

Every recipe section and every component's nested `Config` goes through `to_dataclass`, which
rejects unknown keys (listing the valid ones), checks value types against the annotations and
recurses into nested dataclasses and component tables. Errors carry the dotted path of the
offending value so the one-line message points at the exact place in the recipe.
"""

from __future__ import annotations

import copy
import dataclasses
import difflib
import types
import typing
from typing import Any, Literal, Union

from bltx.errors import ConfigError

# Metadata key marking a `dict` field as a nested component table of a registry kind,
# e.g. `patcher: dict = component("patcher", {"type": "byte"})`.
COMPONENT_KIND = "bltx_component_kind"
# How a nested component table is parsed into its registered Config. bltx/registry.py
# (which builds on this module) installs its `parse` here when imported, so the schema
# never imports the registry: the dependency points one way.
_component_parser = None


def set_component_parser(parse) -> None:
    global _component_parser
    _component_parser = parse


class ComponentTable(dict):
    """A component table parsed once, at recipe load: still the plain table (read it, save it
    as TOML, copy it and override keys), carrying the `Config` object it parsed to, which
    `build` uses instead of parsing it again. A table changed in place after parsing no
    longer matches what it parsed from, and is parsed afresh by whoever builds it."""

    def __init__(self, table=(), kind: str | None = None, config: Any = None):
        super().__init__(table)  # ComponentTable(pairs) alone, as dict-copying code makes it: no Config
        self.kind = kind
        self.config = config
        self._parsed_from = copy.deepcopy(dict(table))

    def parsed_config(self, kind: str) -> tuple[bool, Any]:
        """(True, Config) when this table was parsed as `kind` and is unchanged since."""
        if self.kind is not None and kind == self.kind and dict(self) == self._parsed_from:
            return True, self.config
        return False, None


def component(kind: str, default: dict | None = None, optional: bool = False):
    """Declare a dataclass field holding a component table (`{"type": ..., ...}`) of `kind`.

    The table is validated against the registered component's Config when the enclosing
    dataclass is validated, so a bad nested table fails at recipe load, not at build time.
    `optional=True` allows the field to be absent (None).
    """
    value = None if default is None else dict(default)
    if value is None and not optional:
        raise ValueError("a required component field needs a default table")
    return dataclasses.field(
        default_factory=(lambda: None if value is None else dict(value)),
        metadata={COMPONENT_KIND: kind},
    )


def did_you_mean(name: str, options) -> str:
    close = difflib.get_close_matches(str(name), list(options), n=1)
    return f" (did you mean '{close[0]}'?)" if close else ""


def type_name(tp: Any) -> str:
    origin = typing.get_origin(tp)
    if origin is Literal:
        return " | ".join(repr(a) for a in typing.get_args(tp))
    if origin in (Union, types.UnionType):
        return " | ".join(type_name(a) for a in typing.get_args(tp))
    if origin in (list, tuple):
        args = typing.get_args(tp)
        return f"list of {type_name(args[0])}" if args else "list"
    if tp is type(None):
        return "none"
    return getattr(tp, "__name__", str(tp))


def _coerce(value: Any, tp: Any, where: str, kind: str | None) -> Any:
    """Check `value` against annotation `tp`; return it (possibly converted)."""
    if tp is Any:
        return value
    origin = typing.get_origin(tp)
    if origin in (Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        real = [a for a in args if a is not type(None)]
        if len(real) == 1:  # Optional[X]: X's own message is the clearer one
            return _coerce(value, real[0], where, kind)
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(value, arg, where, kind)
            except ConfigError:
                continue
        raise ConfigError(f"{where} = {value!r}: expected {type_name(tp)}")
    if origin is Literal:
        allowed = typing.get_args(tp)
        if value not in allowed:
            raise ConfigError(
                f"{where} = {value!r}: expected one of {', '.join(repr(a) for a in allowed)}"
                + did_you_mean(value, [str(a) for a in allowed])
            )
        return value
    if origin in (list, tuple):
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where} = {value!r}: expected {type_name(tp)}")
        args = typing.get_args(tp)
        item_tp = args[0] if args else Any
        items = [_coerce(v, item_tp, f"{where}[{i}]", None) for i, v in enumerate(value)]
        return tuple(items) if origin is tuple else items
    if dataclasses.is_dataclass(tp):
        if dataclasses.is_dataclass(value):
            return value
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a table, got {value!r}")
        return to_dataclass(tp, value, where)
    if tp is dict or origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a table, got {value!r}")
        if kind is not None and _component_parser is not None:
            # Parse the nested component table now, once: a bad table fails at recipe load,
            # and the Config it becomes travels with the table to `build`.
            return _component_parser(kind, value, where)
        return value
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{where} = {value!r}: expected true or false")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{where} = {value!r}: expected an integer")
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{where} = {value!r}: expected a number")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"{where} = {value!r}: expected a string")
        return value
    if isinstance(tp, type) and not isinstance(value, tp):
        raise ConfigError(f"{where} = {value!r}: expected {type_name(tp)}")
    return value


def to_dataclass(cls: type, table: dict, where: str = "") -> Any:
    """Build dataclass `cls` from `table`, rejecting unknown keys and mistyped values."""
    if not isinstance(table, dict):
        raise ConfigError(f"{where or cls.__name__}: expected a table, got {table!r}")
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    hints = typing.get_type_hints(cls)
    prefix = f"{where}." if where else ""
    kwargs = {}
    for key, value in table.items():
        if key not in fields:
            valid = ", ".join(sorted(fields)) or "(none)"
            raise ConfigError(
                f"unknown key '{prefix}{key}'{did_you_mean(key, fields)}; valid keys: {valid}"
            )
        kind = fields[key].metadata.get(COMPONENT_KIND)
        kwargs[key] = _coerce(value, hints[key], f"{prefix}{key}", kind)
    # Component tables left at their defaults are parsed too: a default must be buildable,
    # and the config's own checks (__post_init__) then see parsed tables.
    for key, f in fields.items():
        kind = f.metadata.get(COMPONENT_KIND)
        if key not in kwargs and kind is not None and f.default_factory is not dataclasses.MISSING:
            default = f.default_factory()
            if default is not None:
                kwargs[key] = _coerce(default, hints[key], f"{prefix}{key}", kind)
    try:
        return cls(**kwargs)
    except TypeError as exc:  # a required field was not given
        raise ConfigError(f"{where or cls.__name__}: {exc}") from None
    except ValueError as exc:  # __post_init__ checks raise ValueError with a reason
        text = str(exc)
        # Checks say "KEY = VALUE: rule" (bltx/checks.py). Section checks name their key in
        # full ("training.steps = -1: ..."); a component's names its field, which gets the
        # table's path ("n_heads = 3" -> "model.encoder.n_heads = 3").
        key = text.split(" = ", 1)[0]
        if where and key in fields:
            text = f"{where}.{text}"
        elif not (where and text.startswith(f"{where}.")):
            text = f"{where or cls.__name__}: {text}"
        raise ConfigError(text) from None


def to_table(obj: Any) -> Any:
    """Dataclass (or nested structure) -> plain TOML-able dicts and lists."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: to_table(getattr(obj, f.name)) for f in dataclasses.fields(obj) if f.init}
    if isinstance(obj, dict):
        return {k: to_table(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_table(v) for v in obj]
    return obj
