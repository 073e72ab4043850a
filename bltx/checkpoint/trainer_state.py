"""The trainer's part of a checkpoint (step, schedule position, sampler position), checked
before any of it is applied.

DCP stores it as one JSON string (see `Trainer.trainer_state`). A checkpoint whose string
is not JSON, lacks a key, holds a value of the wrong type or a negative count would
otherwise fail deep inside the sampler, or be accepted and go on to save `step_-0000003`:
`parse_trainer_state` turns each of those into one CheckpointError line, which resume
treats like any other failed check (it falls back to an older checkpoint).
"""

from __future__ import annotations

import json

from bltx.errors import CheckpointError

# Positions of a data sampler (bltx/data/sampler.py); a mixture (bltx/data/mixture.py)
# holds a step and one of these per source (None for a validation-only source).
_SAMPLER = ("epoch", "cursor", "seed", "num_items")


def _is_count(value) -> bool:
    # bool is an int in Python; a count never is one.
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _problem(state: dict) -> str | None:
    """What is malformed in a parsed trainer state, or None."""
    problem = _counts([(state, "step"), (state.get("scheduler"), "scheduler.last_epoch")])
    if problem is not None:
        return problem
    checks = []
    sampler = state.get("sampler")
    if not isinstance(sampler, dict):
        return "'sampler' is missing or not an object"
    if "mixture" in sampler:
        checks.append((sampler, "sampler.step"))
        if not isinstance(sampler["mixture"], list):
            return "'sampler.mixture' is not a list"
        samplers = [(f"sampler.mixture[{i}]", s) for i, s in enumerate(sampler["mixture"]) if s is not None]
    else:
        samplers = [("sampler", sampler)]
    for name, s in samplers:
        if not isinstance(s, dict):
            return f"'{name}' is not an object"
        checks += [(s, f"{name}.{key}") for key in _SAMPLER]
        if "shuffle_buffer" in s:
            checks.append((s, f"{name}.shuffle_buffer"))
    return _counts(checks)


def _counts(checks: list[tuple[object, str]]) -> str | None:
    """The first (table, "dotted.name") whose last key is missing or not a count."""
    for node, name in checks:
        key = name.rsplit(".", 1)[-1]
        if not isinstance(node, dict) or key not in node:
            return f"'{name}' is missing"
        if not _is_count(node[key]):
            return f"'{name}' is {node[key]!r}, not a count >= 0"
    return None


def parse_trainer_state(state: dict, where: object) -> dict:
    """The validated trainer state of checkpoint `where` (CheckpointError otherwise)."""
    def bad(problem: str) -> CheckpointError:
        return CheckpointError(f"checkpoint {where} has a malformed trainer state ({problem}); use another checkpoint")

    text = state.get("json") if isinstance(state, dict) else None
    if not isinstance(text, str):
        raise bad("no JSON text")
    try:
        parsed = json.loads(text)
    except ValueError:
        raise bad("not valid JSON") from None
    if not isinstance(parsed, dict):
        raise bad("not a JSON object")
    problem = _problem(parsed)
    if problem is not None:
        raise bad(problem)
    return parsed
