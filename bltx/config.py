"""Recipes: TOML files with includes and command-line overrides, validated strictly.

    include = ["../toml_configs/model/tiny.toml"]   # relative to this file; later wins
    [training]
    steps = 200

Merging is deep: tables merge key by key, anything else is replaced. A table whose `type`
differs from the table it overrides replaces it whole (switching a component must not
inherit the old component's options). `--set a.b.c=VALUE` overrides are applied last; VALUE
is parsed as a TOML value (`3`, `1.5`, `true`, `"text"`, `[3, 4]`) and taken as a plain
string when it is not one.
"""

from __future__ import annotations

import copy
import os
import tomllib
from pathlib import Path
from typing import Any

from bltx.errors import ConfigError
from bltx.registry import get_registry, load_plugins
from bltx.schema import did_you_mean, to_dataclass, to_table
from bltx.sections import Recipe

# Limits checked at load, so that a recipe is one ConfigError line, never a RecursionError
# from the include chain, tomllib, merging or validation: far above any real recipe (the
# deepest bundled include chain is 2, the deepest value model.patcher.model.x is 4).
MAX_INCLUDE_DEPTH = 16
MAX_NESTING = 32


def read_toml(path: Path) -> dict:
    if path.exists() and not path.is_file() and not path.is_dir():
        # A FIFO or device would block or stream forever.
        raise ConfigError(f"recipe path {path} is not a regular file (a pipe, device or socket); name a TOML file")
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"recipe file not found: {path}; check the path") from None
    except IsADirectoryError:
        raise ConfigError(f"recipe path is a folder, not a TOML file: {path}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not UTF-8 text; recipes are TOML files") from None
    try:
        table = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: invalid TOML: {exc}") from None
    except RecursionError:
        raise ConfigError(f"{path}: values nested too deeply (at most {MAX_NESTING} levels)") from None
    check_nesting(table, str(path))
    return table


def check_nesting(value: Any, where: str) -> None:
    """ConfigError when tables or arrays nest deeper than MAX_NESTING (walked without
    recursion, so the check itself cannot overflow the stack)."""
    todo = [(value, 0)]
    while todo:
        node, depth = todo.pop()
        if depth > MAX_NESTING:
            raise ConfigError(f"{where}: values nested more than {MAX_NESTING} levels deep; flatten the recipe")
        children = node.values() if isinstance(node, dict) else node if isinstance(node, list) else ()
        todo.extend((child, depth + 1) for child in children)


def merge(base: dict, override: dict) -> dict:
    """Deep merge `override` onto a copy of `base` (see module docstring for the rules)."""
    out = copy.deepcopy(base)
    for key, value in override.items():
        old = out.get(key)
        if isinstance(old, dict) and isinstance(value, dict) and old.get("type", value.get("type")) == value.get("type", old.get("type")):
            out[key] = merge(old, value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def load_raw(path: str | os.PathLike, _stack: tuple[Path, ...] = ()) -> dict:
    """Read a recipe and its includes (recursively) into one merged dict."""
    path = Path(path).resolve()
    if path in _stack:
        chain = " -> ".join(p.name for p in (*_stack, path))
        raise ConfigError(f"include cycle: {chain}; remove one of the includes")
    if len(_stack) >= MAX_INCLUDE_DEPTH:
        raise ConfigError(f"{_stack[0].name}: includes nest more than {MAX_INCLUDE_DEPTH} files deep "
                          f"(at {path.name}); include the fragments from fewer levels")
    table = read_toml(path)
    includes = table.pop("include", [])
    if isinstance(includes, str):
        includes = [includes]
    if not isinstance(includes, list) or not all(isinstance(i, str) for i in includes):
        raise ConfigError(f"{path}: 'include' must be a list of file paths")
    merged: dict = {}
    for inc in includes:
        inc_path = (path.parent / inc).resolve()
        if inc_path.is_dir():
            raise ConfigError(f"{path.name}: include '{inc}' is a folder ({inc_path}), not a TOML file; name a .toml file")
        if inc_path.exists() and not inc_path.is_file():
            raise ConfigError(f"{path.name}: include '{inc}' is not a regular file (a pipe, device or socket); name a .toml file")
        if not inc_path.is_file():
            raise ConfigError(
                f"{path.name}: include '{inc}' not found (looked at {inc_path}); "
                f"include paths are relative to the including file"
            )
        merged = merge(merged, load_raw(inc_path, (*_stack, path)))
    return merge(merged, table)


def parse_override(text: str) -> tuple[list[str], Any]:
    """'a.b.c=VALUE' -> (['a', 'b', 'c'], parsed VALUE)."""
    if "=" not in text:
        raise ConfigError(f"--set '{text}': expected KEY=VALUE, e.g. --set training.steps=50")
    key, raw = text.split("=", 1)
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:  # undecodable argv bytes arrive as lone surrogates
        raise ConfigError(f"--set {key.strip()}=...: the value is not valid UTF-8 text; pass UTF-8") from None
    parts = [p.strip() for p in key.strip().split(".")]
    if not all(parts):
        raise ConfigError(f"--set '{text}': empty key part in '{key}'")
    try:
        value = tomllib.loads(f"v = {raw}")["v"]
    except tomllib.TOMLDecodeError:
        value = raw  # a bare word: treat as a string
    except RecursionError:
        raise ConfigError(f"--set {key.strip()}=...: the value is nested too deeply (at most {MAX_NESTING} levels)") from None
    check_nesting(value, f"--set {key.strip()}")
    return parts, value


def apply_overrides(table: dict, overrides: list[str]) -> dict:
    out = copy.deepcopy(table)
    for text in overrides:
        parts, value = parse_override(text)
        node = out
        for i, part in enumerate(parts[:-1]):
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                where = ".".join(parts[: i + 1])
                raise ConfigError(f"--set {text}: '{where}' is a value, not a table")
            node = child
        node[parts[-1]] = value
    return out


def load_recipe(path: str | os.PathLike, overrides: list[str] | tuple[str, ...] = (), *,
                saved: bool = False, plugins: list[str] | tuple[str, ...] = ()) -> Recipe:
    """Load, merge, override and validate a recipe. Plugins named in job.plugins are imported
    before validation so their components can be named in the recipe.

    `saved=True` is for a recipe bltx wrote into a run or checkpoint folder: such a folder
    may come from anyone, and importing a module runs it, so its job.plugins are never
    imported on their own: each must be among `plugins`, the modules the user named
    (a tool's `--plugin`), or loading stops with one line saying which to pass."""
    raw = apply_overrides(load_raw(path), list(overrides))
    check_nesting(raw, "the recipe with its --set overrides")  # `--set a.b.c....` nests too
    return recipe_from_table(raw, source=str(Path(path).resolve()), saved=saved, allowed=plugins)


def recipe_from_table(raw: dict, source: str = "", *, saved: bool = False,
                      allowed: list[str] | tuple[str, ...] = ()) -> Recipe:
    plugins = raw.get("job", {}).get("plugins", []) if isinstance(raw.get("job"), dict) else []
    if not isinstance(plugins, list) or not all(isinstance(p, str) for p in plugins):
        raise ConfigError("job.plugins must be a list of module names, e.g. ['plugins.my_patcher']")
    if saved:
        unnamed = [p for p in plugins if p not in allowed]
        if unnamed:
            flags = " ".join(f"--plugin {p}" for p in unnamed)
            raise ConfigError(
                f"{source or 'the saved recipe'} lists job.plugins {unnamed}; bltx never imports "
                f"plugins named by a saved recipe (importing runs code): if you trust them, pass {flags}"
            )
    load_plugins(plugins)
    registered = get_registry("section")
    own = [f for f in Recipe.__dataclass_fields__ if Recipe.__dataclass_fields__[f].init]
    unknown = sorted(set(raw) - set(own) - set(registered.names()))
    if unknown:
        # to_dataclass would also catch this; this message names it as a section.
        valid = [*own, *registered.names()]
        raise ConfigError(
            f"unknown section '{unknown[0]}'{did_you_mean(unknown[0], valid)}; "
            f"valid sections: {', '.join(valid)} (a plugin registers its own with @register(\"section\", NAME))"
        )
    recipe = to_dataclass(Recipe, {k: v for k, v in raw.items() if k in own})
    for name in registered.names():
        table = raw.get(name, {})
        if not isinstance(table, dict):
            raise ConfigError(f"[{name}] must be a table, got {table!r}")
        recipe.plugin_sections[name] = to_dataclass(registered.get(name), table, name)
    recipe.source = source
    return recipe


def recipe_to_toml(recipe: Recipe) -> str:
    """Render a recipe (after merging) as TOML text, for --print-config and run folders."""
    table = to_table(recipe)
    table.update({name: to_table(value) for name, value in recipe.plugin_sections.items()})
    return dumps_toml(table)


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        escaped = value.replace("\\", "\\\\").replace('"', '\\"')
        escaped = "".join(c if c.isprintable() else f"\\u{ord(c):04x}" for c in escaped)
        return f'"{escaped}"'
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        # None is omitted, as in tables (an unset optional field: TOML has no null).
        return "{ " + ", ".join(f"{k} = {_toml_value(v)}" for k, v in value.items() if v is not None) + " }"
    raise TypeError(f"cannot write {type(value).__name__} as TOML")


def dumps_toml(table: dict, prefix: str = "") -> str:
    """Minimal TOML writer: scalars first, then sub-tables as [a.b] headers. None is omitted."""
    lines, tables = [], []
    for key, value in table.items():
        if value is None:
            continue
        if isinstance(value, dict):
            tables.append((key, value))
        else:
            lines.append(f"{key} = {_toml_value(value)}")
    out = []
    if lines:
        if prefix:
            out.append(f"[{prefix}]")
        out.extend(lines)
    for key, value in tables:
        sub = dumps_toml(value, f"{prefix}.{key}" if prefix else key)
        if sub:
            out.append("")
            out.append(sub)
    if not lines and prefix and not tables:
        out.append(f"[{prefix}]")
    return "\n".join(out).strip("\n")


def resolve_path(recipe: Recipe, path: str, key: str = "") -> Path:
    """A path from a recipe: absolute, or relative to the current folder if it exists there,
    else relative to the recipe file. With `key` (the recipe key naming it), a path found
    in neither place is a ConfigError listing both places tried."""
    p = Path(os.path.expanduser(path))
    if p.is_absolute() or p.exists() or not recipe.source:
        found = p
    else:
        found = Path(recipe.source).parent / p
    if key and not found.exists():
        tried = dict.fromkeys([p.absolute(), found.absolute()])
        raise ConfigError(f"{key} {path!r} not found (looked at {' and '.join(map(str, tried))}); check the path")
    return found
