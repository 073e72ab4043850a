"""Optimizers and LR schedules are registered components chosen by `type`: a plugin's own
optimizer and schedule train the demo model through the real trainer."""

from __future__ import annotations

import json

import torch

from bltx.config import load_recipe
from bltx.registry import Registry, register
from bltx.train.trainer import Trainer

if "test_sgd" not in Registry.for_kind("optimizer")._entries:

    @register("optimizer", "test_sgd")
    def build_sgd(model, cfg, device):
        return torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=cfg.lr)

    @register("lr_scheduler", "test_halving")
    def halving(cfg, total_steps):
        return lambda step: 0.5 ** step


def test_plugin_optimizer_and_schedule_by_type(tmp_path):
    recipe = load_recipe("recipes/tiny.toml", [
        "optimizer.type=\"test_sgd\"", "optimizer.lr=0.1", "lr_scheduler.type=\"test_halving\"",
        "training.steps=3", "data.seq_len=64", "model.max_patches=32", "eval.interval=0",
        "metrics.log_interval=1", "metrics.tensorboard=false", f"job.dump_dir=\"{tmp_path}\"",
        "checkpoint.enable=false",
    ])
    trainer = Trainer(recipe)
    assert isinstance(trainer.optimizer, torch.optim.SGD)
    assert trainer.fit() == 0
    rows = [json.loads(x) for x in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [r["lr"] for r in rows if r["split"] == "train"] == [0.1, 0.05, 0.025]
