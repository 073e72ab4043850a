"""Learning-rate schedules and optimizer parameter groups."""

import math

import pytest
import torch

from bltx.sections import LRSchedulerConfig, OptimizerConfig
from bltx.train.optim import build_optimizer
from bltx.train.schedule import lr_factor_fn


def factors(name, total, **kw):
    f = lr_factor_fn(LRSchedulerConfig(type=name, **kw), total)
    return [f(s) for s in range(total)]


def test_warmup_is_linear_and_never_zero():
    assert factors("constant", 6, warmup_steps=4) == [0.25, 0.5, 0.75, 1.0, 1.0, 1.0]


def test_cosine_goes_from_peak_to_min_at_the_last_step():
    f = factors("cosine", 12, warmup_steps=2, min_lr_ratio=0.1)
    assert f[:3] == [0.5, 1.0, 1.0]
    assert math.isclose(f[-1], 0.1) and all(a >= b for a, b in zip(f[2:], f[3:]))


def test_wsd_is_flat_then_decays_linearly():
    f = factors("wsd", 10, warmup_steps=2, decay_fraction=0.3, min_lr_ratio=0.0)
    assert f[:7] == [0.5, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0]
    assert [round(x, 6) for x in f[7:]] == [round(2 / 3, 6), round(1 / 3, 6), 0.0]


@pytest.mark.parametrize("fused", [True, False])
def test_adamw_decays_matrices_only(fused):
    model = torch.nn.Sequential(torch.nn.Linear(3, 3), torch.nn.LayerNorm(3))
    opt = build_optimizer(model, OptimizerConfig(weight_decay=0.2, fused=fused), torch.device("cpu"))
    decay, no_decay = opt.param_groups
    assert decay["weight_decay"] == 0.2 and [p.ndim for p in decay["params"]] == [2]
    assert no_decay["weight_decay"] == 0.0 and len(no_decay["params"]) == 3
    assert bool(opt.defaults["fused"]) is fused
