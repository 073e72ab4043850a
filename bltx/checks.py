"""Range checks for recipe numbers, used by the configs' `__post_init__`.

Each raises ValueError("KEY = VALUE: RULE"), which `bltx.schema.to_dataclass` turns into a
one-line ConfigError. NaN fails every check (it compares false with everything) and
infinities fail all but an unbounded `at_least`, so `finite()` guards the float ones.
"""

from __future__ import annotations

import math


def require(ok: bool, key: str, value, rule: str) -> None:
    if not ok:
        raise ValueError(f"{key} = {value!r}: {rule}")


def finite(value: float) -> bool:
    return isinstance(value, (int, float)) and math.isfinite(value)


def at_least(key: str, value, low, note: str = "") -> None:
    """value >= low (and finite, for floats)."""
    ok = value >= low and (not isinstance(value, float) or finite(value))
    require(ok, key, value, f"must be a finite number >= {low}{note}" if isinstance(value, float) else f"must be >= {low}{note}")


def positive(key: str, value: float, note: str = "") -> None:
    require(finite(value) and value > 0, key, value, f"must be a finite number > 0{note}")


def between(key: str, value: float, low: float, high: float, high_open: bool = False, note: str = "") -> None:
    """low <= value <= high (or < high with high_open)."""
    ok = finite(value) and low <= value and (value < high if high_open else value <= high)
    require(ok, key, value, f"must be in [{low}, {high}{')' if high_open else ']'}{note}")


# Below this a temperature overflows float32 logits (logits / T = inf); 0 means greedy.
MIN_TEMPERATURE = 1e-6


def check_sampling(temperature: float, top_k: int, top_p: float, prefix: str = "") -> None:
    """The sampling rules' limits (recipe `generate.*` and `SamplingConfig` alike)."""
    require(finite(temperature) and (temperature == 0 or temperature >= MIN_TEMPERATURE),
            f"{prefix}temperature", temperature, f"must be 0 (greedy) or a finite number >= {MIN_TEMPERATURE}")
    at_least(f"{prefix}top_k", top_k, 0, " (0: no top-k cut)")
    require(finite(top_p) and 0.0 < top_p <= 1.0, f"{prefix}top_p", top_p, "must be in (0, 1] (1: no nucleus cut)")


def registered(kind: str, name: str, key: str) -> None:
    """One-line error unless `name` is a registered component of `kind` (lists the names;
    plugins listed in job.plugins are imported before the recipe is checked)."""
    from bltx.registry import get_registry

    get_registry(kind).get(name, where=key)
