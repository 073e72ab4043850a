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

# (key path, required): every value a non-negative int. shuffle_buffer is absent when 0.
_COUNTS = (
    (("step",), True),
    (("scheduler", "last_epoch"), True),
    (("sampler", "epoch"), True),
    (("sampler", "cursor"), True),
    (("sampler", "seed"), True),
    (("sampler", "num_items"), True),
    (("sampler", "shuffle_buffer"), False),
)


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
    for path, required in _COUNTS:
        node = parsed
        for key in path[:-1]:
            node = node.get(key) if isinstance(node, dict) else None
        name = ".".join(path)
        if not isinstance(node, dict) or path[-1] not in node:
            if required:
                raise bad(f"'{name}' is missing")
            continue
        value = node[path[-1]]
        # bool is an int in Python; a count never is one.
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            raise bad(f"'{name}' is {value!r}, not a count >= 0")
    return parsed
