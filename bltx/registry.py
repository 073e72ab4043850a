"""Component registries: one per kind, components registered by name, built from TOML tables.

    @register("patcher", "static")
    class StaticPatcher(Patcher):
        @dataclass
        class Config:
            stride: int = 4
        def __init__(self, cfg: Config, **context): ...

    build("patcher", {"type": "static", "stride": 6})   # -> StaticPatcher(Config(stride=6))

A table's `type` names the component; its other keys are the fields of the component's nested
`Config` dataclass. Unknown types, unknown keys and mistyped values raise `ConfigError` with
one line naming what is valid. Keyword arguments to `build` are passed to the constructor as
context (sizes the parent knows, e.g. the latent width an encoder must project to).
"""

from __future__ import annotations

import dataclasses
import importlib
import inspect
from importlib import metadata
from typing import Any, Callable

from bltx.errors import ConfigError
from bltx.schema import ComponentTable, did_you_mean, set_component_parser, to_dataclass

# Where bltx's own components of each kind live, as module names: the first lookup of a
# kind imports that kind's modules and nothing else. The registry is core and names the
# rooms above it only as data, so `build("patcher", ...)` loads patchers, not the trainer,
# and no import arrow points from core up into the application. Add a module here when it
# registers a built-in; plugins never edit this table (job.plugins, entry points).
BUILTINS: dict[str, tuple[str, ...]] = {
    "model": ("bltx.model.blt", "bltx.model.entropy_lm", "bltx.model.baselines", "bltx.model.learned_blt",
              "bltx.interop.byteify.model"),
    "patcher": ("bltx.patching.simple", "bltx.patching.entropy", "bltx.patching.bpe"),
    "byte_embedder": ("bltx.model.embedder",),
    "encoder": ("bltx.model.local_encoder", "bltx.model.byte_encoder"),
    "chunker": ("bltx.model.chunking",),
    "latent": ("bltx.model.latent", "bltx.model.recurrent_latent", "bltx.interop.llama"),
    "decoder": ("bltx.model.local_decoder",),
    "adapter": ("bltx.model.adapters",),
    "entropy_model": ("bltx.model.entropy_model",),
    "attention": ("bltx.model.attention",),
    "optimizer": ("bltx.train.optim",),
    "lr_scheduler": ("bltx.train.schedule",),
    "parallel_plan": ("bltx.parallel.blt_plan",),
    "data_source": ("bltx.data.formats", "bltx.data.jsonl", "bltx.data.columnar"),
    # Recipe sections beyond bltx's own (bltx/sections.py): a plugin task's settings, a
    # @dataclass registered by name (`@register("section", "my_task")`), read as
    # `recipe.section("my_task")`.
    "section": (),
    "task": (
        "bltx.tasks.train", "bltx.tasks.entropy", "bltx.tasks.eval", "bltx.tasks.generate",
        "bltx.tasks.research", "bltx.tasks.show_data", "bltx.tasks.lm_eval",
    ),
}
# Kinds known at start-up; plugins may add more with `Registry.for_kind(new_kind)`.
KINDS = tuple(BUILTINS)

ENTRY_POINT_GROUP = "bltx.plugins"


class Registry:
    """Name -> component class for one component kind."""

    _by_kind: dict[str, "Registry"] = {}

    def __init__(self, kind: str):
        self.kind = kind
        self._entries: dict[str, Any] = {}
        self._builtins_loaded = False

    def _load_builtins(self) -> None:
        """Import the modules that register this kind's built-ins (once)."""
        if not self._builtins_loaded:
            self._builtins_loaded = True
            for module in BUILTINS.get(self.kind, ()):
                importlib.import_module(module)

    @classmethod
    def for_kind(cls, kind: str, create: bool = True) -> "Registry":
        if kind not in cls._by_kind:
            if not create:
                raise ConfigError(
                    f"unknown component kind '{kind}'{did_you_mean(kind, cls._by_kind)}; "
                    f"known kinds: {', '.join(sorted(cls._by_kind))}"
                )
            cls._by_kind[kind] = Registry(kind)
        return cls._by_kind[kind]

    def register(self, name: str, obj: Any = None, *, replace: bool = False):
        """Register `obj` under `name`; usable as a decorator. Duplicate names are an error."""

        def add(target):
            if not replace and name in self._entries and self._entries[name] is not target:
                existing = self._entries[name]
                raise ValueError(
                    f"{self.kind} '{name}' is already registered by "
                    f"{existing.__module__}.{existing.__qualname__}; pick another name"
                )
            config_cls = getattr(target, "Config", None)
            if config_cls is not None and not dataclasses.is_dataclass(config_cls):
                raise TypeError(f"{target.__qualname__}.Config must be a @dataclass")
            self._entries[name] = target
            return target

        return add(obj) if obj is not None else add

    def names(self) -> list[str]:
        self._load_builtins()
        return sorted(self._entries)

    def get(self, name: str, where: str = "") -> Any:
        self._load_builtins()
        if name not in self._entries:
            at = f"{where}: " if where else ""
            listed = ", ".join(sorted(self._entries)) or "(none registered)"
            raise ConfigError(
                f"{at}unknown {self.kind} '{name}'{did_you_mean(name, self._entries)}; "
                f"registered: {listed} (plugins: list modules in job.plugins)"
            )
        return self._entries[name]

    def __contains__(self, name: str) -> bool:
        self._load_builtins()
        return name in self._entries


for _kind in KINDS:
    Registry.for_kind(_kind)


def register(kind: str, name: str, *, replace: bool = False) -> Callable:
    """Decorator: `@register("patcher", "entropy")`."""
    return Registry.for_kind(kind).register(name, replace=replace)


def get_registry(kind: str) -> Registry:
    return Registry.for_kind(kind, create=False)


def _split_table(kind: str, table: Any, where: str) -> tuple[str, dict]:
    where = where or kind
    if isinstance(table, str):  # shorthand: patcher = "byte"
        return table, {}
    if not isinstance(table, dict):
        raise ConfigError(f"{where}: expected a table with a 'type' key, got {table!r}")
    if "type" not in table:
        names = ", ".join(get_registry(kind).names())
        raise ConfigError(f"{where}: missing 'type'; registered {kind} types: {names}")
    rest = {k: v for k, v in table.items() if k != "type"}
    return table["type"], rest


def validate(kind: str, table: Any, where: str = "") -> Any:
    """The Config a component table parses to (or None for a component without options),
    without building it; a table parsed before (a `ComponentTable`) is not parsed again."""
    if isinstance(table, ComponentTable):
        parsed, config = table.parsed_config(kind)
        if parsed:
            return config
    name, rest = _split_table(kind, table, where)
    where = where or kind
    cls = get_registry(kind).get(name, where=f"{where}.type")
    config_cls = getattr(cls, "Config", None)
    if config_cls is None:
        if rest:
            raise ConfigError(f"{where}: {kind} '{name}' takes no options, got {sorted(rest)}")
        return None
    return to_dataclass(config_cls, rest, where)


def build(kind: str, table: Any, where: str = "", **context) -> Any:
    """Build the component named by `table["type"]` with its Config and the given context."""
    cfg = validate(kind, table, where)
    name, _ = _split_table(kind, table, where)
    cls = get_registry(kind).get(name)
    args = () if cfg is None else (cfg,)
    try:  # the constructor's signature against what the slot passes, before running it
        inspect.signature(cls).bind(*args, **context)
    except TypeError as exc:
        passed = ", ".join(["cfg"] * len(args) + sorted(context)) or "nothing"
        raise ConfigError(
            f"{where or kind}: {kind} '{name}' ({cls.__name__}) cannot be built with what the slot "
            f"passes ({passed}): {exc}; write its constructor as __init__(self, cfg, **context)"
        ) from None
    return cls(*args, **context)


def parse(kind: str, table: Any, where: str = "") -> ComponentTable:
    """A component table checked once: the same table, carrying the Config it parses to."""
    return ComponentTable(table, kind, validate(kind, table, where))


set_component_parser(parse)


def load_plugins(modules: list[str] | tuple[str, ...] = (), entry_points: bool = True) -> None:
    """Import plugin modules named in a recipe and those installed under `bltx.plugins`."""
    for mod in modules:
        try:
            importlib.import_module(mod)
        except ModuleNotFoundError as exc:
            if exc.name and mod.startswith(exc.name):
                raise ConfigError(
                    f"job.plugins: cannot import plugin module '{mod}'; check the name and "
                    f"that its folder is on PYTHONPATH (run from the project root)"
                ) from None
            raise
    if entry_points:
        for ep in metadata.entry_points(group=ENTRY_POINT_GROUP):
            ep.load()
