"""Learning-rate schedules as multipliers of the base lr, registered under "lr_scheduler".

Each registered entry is `fn(cfg, total_steps) -> (step -> factor)`; `build_scheduler` wraps
it in a `LambdaLR`, whose state (just the step count) goes into checkpoints.

- constant: linear warmup, then 1.
- cosine:   linear warmup, then cosine from 1 down to `min_lr_ratio` at the last step.
- wsd:      warmup-stable-decay: linear warmup, flat at 1, then a linear decay to
            `min_lr_ratio` over the last `decay_fraction` of the steps.
"""

from __future__ import annotations

import math
from typing import Callable

import torch

from bltx.registry import get_registry, register
from bltx.sections import LRSchedulerConfig


def _warmup(step: int, warmup: int) -> float | None:
    if warmup > 0 and step < warmup:
        return (step + 1) / warmup  # never 0: the first step must move the weights
    return None


@register("lr_scheduler", "constant")
def constant(cfg: LRSchedulerConfig, total: int) -> Callable[[int], float]:
    def f(step: int) -> float:
        w = _warmup(step, cfg.warmup_steps)
        return 1.0 if w is None else w

    return f


@register("lr_scheduler", "cosine")
def cosine(cfg: LRSchedulerConfig, total: int) -> Callable[[int], float]:
    warm = min(cfg.warmup_steps, total)
    span = max(1, total - warm - 1)

    def f(step: int) -> float:
        w = _warmup(step, warm)
        if w is not None:
            return w
        progress = min(1.0, (step - warm) / span)
        cos = 0.5 * (1.0 + math.cos(math.pi * progress))
        return cfg.min_lr_ratio + (1.0 - cfg.min_lr_ratio) * cos

    return f


@register("lr_scheduler", "wsd")
def warmup_stable_decay(cfg: LRSchedulerConfig, total: int) -> Callable[[int], float]:
    warm = min(cfg.warmup_steps, total)
    decay = max(1, int(round(cfg.decay_fraction * total)))
    decay_start = max(warm, total - decay)

    def f(step: int) -> float:
        w = _warmup(step, warm)
        if w is not None:
            return w
        if step < decay_start:
            return 1.0
        progress = min(1.0, (step - decay_start + 1) / decay)
        return 1.0 - (1.0 - cfg.min_lr_ratio) * progress

    return f


def lr_factor_fn(cfg: LRSchedulerConfig, total_steps: int) -> Callable[[int], float]:
    return get_registry("lr_scheduler").get(cfg.type, where="lr_scheduler.type")(cfg, total_steps)


def build_scheduler(
    optimizer: torch.optim.Optimizer, cfg: LRSchedulerConfig, total_steps: int
) -> torch.optim.lr_scheduler.LambdaLR:
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lr_factor_fn(cfg, total_steps))
