"""Every number in a recipe is range-checked at load time: one line naming the key, the
value and the allowed range (exit 2 from the CLI). Checked in-process, plus one CLI launch
to see the line and the exit code."""

import pytest

from bltx.config import load_recipe
from bltx.errors import ConfigError
from helpers import ROOT, assert_one_clean_line, run_cli

TINY = str(ROOT / "recipes" / "tiny.toml")

BAD = [
    ("training.grad_accum=0", "training.grad_accum = 0: must be >= 1"),
    ("training.steps=-1", "training.steps = -1: must be >= 0"),
    ("training.max_norm=nan", "training.max_norm = nan: must be a finite number >= 0"),
    ("training.max_norm=-1.0", "training.max_norm = -1.0"),
    ("optimizer.lr=nan", "optimizer.lr = nan: must be a finite number > 0"),
    ("optimizer.lr=inf", "optimizer.lr = inf"),
    ("optimizer.lr=-0.001", "optimizer.lr = -0.001"),
    ("optimizer.lr=0", "optimizer.lr = 0.0"),
    ("optimizer.betas=[0.9]", "optimizer.betas = [0.9]: must be two numbers"),
    ("optimizer.betas=[0.9, 0.95, 0.99]", "must be two numbers"),
    ("optimizer.betas=[0.9, 1.0]", "optimizer.betas[1] = 1.0: must be in [0.0, 1.0)"),
    ("optimizer.betas=[-0.1, 0.9]", "optimizer.betas[0] = -0.1"),
    ("optimizer.eps=0", "optimizer.eps = 0.0: must be a finite number > 0"),
    ("optimizer.weight_decay=-0.1", "optimizer.weight_decay = -0.1"),
    ("lr_scheduler.min_lr_ratio=100000.0", "lr_scheduler.min_lr_ratio = 100000.0: must be in [0.0, 1.0]"),
    ("lr_scheduler.min_lr_ratio=nan", "lr_scheduler.min_lr_ratio = nan"),
    ("lr_scheduler.decay_fraction=1.5", "lr_scheduler.decay_fraction = 1.5"),
    ("lr_scheduler.warmup_steps=-1", "lr_scheduler.warmup_steps = -1: must be >= 0"),
    ("checkpoint.interval=-5", "checkpoint.interval = -5: must be >= 0 (0: save only at the end)"),
    ("checkpoint.keep_latest=0", "checkpoint.keep_latest = 0"),
    ("metrics.log_interval=0", "metrics.log_interval = 0"),
    ("eval.interval=-1", "eval.interval = -1"),
    ("data.validation_fraction=nan", "data.validation_fraction = nan"),
    ("job.device=tpu", "job.device = 'tpu': must be one of auto, cpu, cuda, cuda:N"),
    ("job.device=cuda:x", "job.device = 'cuda:x'"),
    ("generate.temperature=nan", "generate.temperature = nan: must be 0 (greedy)"),
    ("generate.temperature=inf", "generate.temperature = inf"),
    ("generate.temperature=1e-45", "generate.temperature = 1e-45"),
    ("generate.temperature=-1.0", "generate.temperature = -1.0"),
    ("generate.top_p=0", "generate.top_p = 0.0"),
    ("generate.top_k=-1", "generate.top_k = -1"),
    ("generate.max_bytes=-1", "generate.max_bytes = -1: must be in [0, 1048576]"),
    ("generate.max_bytes=100000000000", "generate.max_bytes = 100000000000"),
    ("calibrate.target_patch_length=nan", "calibrate.target_patch_length = nan"),
    ("calibrate.batches=0", "calibrate.batches = 0"),
    ("model.patcher.threshold=nan", "model.patcher.threshold = nan: must be a finite number"),
    ("model.patcher.threshold=-inf", "model.patcher.threshold = -inf"),
]


@pytest.mark.parametrize("override,expected", BAD, ids=[b[0] for b in BAD])
def test_bad_number_is_refused_at_load(override, expected):
    with pytest.raises(ConfigError) as info:
        load_recipe(TINY, [override])
    assert expected in str(info.value) and "\n" not in str(info.value)


@pytest.mark.parametrize("override", [
    "training.max_norm=0", "training.steps=0", "checkpoint.interval=0", "optimizer.betas=[0.0, 0.999]",
    "lr_scheduler.min_lr_ratio=1.0", "generate.temperature=0", "generate.temperature=1e-3", "job.device=cuda:1",
])
def test_edge_values_that_mean_something_are_accepted(override):
    load_recipe(TINY, [override])


def test_cli_says_it_in_one_line_with_exit_2(tmp_path):
    assert_one_clean_line(run_cli(TINY, "--set", "training.grad_accum=0", "--print-config"),
                          "training.grad_accum = 0: must be >= 1")
