"""The trainer works with any registered model that follows the model API, not just BLT.

The stand-in models (`test_bytelm`, `test_bytelm_extras`) are registered when this module
is imported; `write_recipe` and the tiny recipe tables are in helpers.py.
"""

from __future__ import annotations

from dataclasses import dataclass

import pytest
import torch
from torch import nn

from bltx.bytes import VOCAB_SIZE
from bltx.config import load_recipe
from bltx.model.output import lm_output
from bltx.registry import Registry, register
from helpers import read_metrics, write_recipe

if "test_bytelm" not in Registry.for_kind("model")._entries:

    @register("model", "test_bytelm")
    class ByteLMStandIn(nn.Module):
        """Stand-in model: embedding -> causal depthwise conv -> head, plus a fixed-stride
        `patch` so the trainer's patch statistics are exercised."""

        @dataclass
        class Config:
            dim: int = 32
            stride: int = 4

        def __init__(self, cfg: Config, **context):
            super().__init__()
            self.stride = cfg.stride
            self.embed = nn.Embedding(VOCAB_SIZE, cfg.dim)
            self.mix = nn.Conv1d(cfg.dim, cfg.dim, kernel_size=3, groups=cfg.dim)
            self.head = nn.Linear(cfg.dim, VOCAB_SIZE)

        def patch(self, ids, entropies=None, include_next=False):  # the `patches` capability
            pos = torch.arange(ids.shape[1] + include_next, device=ids.device)
            return (pos % self.stride == 0).expand(ids.shape[0], -1)

        def forward(self, ids, targets=None, *, starts=None, patch_lengths=None, entropies=None):
            h = self.embed(ids).transpose(1, 2)
            h = self.mix(nn.functional.pad(h, (2, 0))).transpose(1, 2)  # causal: left pad
            return lm_output(self.head(torch.tanh(h)), targets, starts=self.patch(ids))

        def init_weights(self):
            for p in self.parameters():
                nn.init.normal_(p, std=0.02)


if "test_bytelm_extras" not in Registry.for_kind("model")._entries:

    @register("model", "test_bytelm_extras")
    class ByteLMWithExtras(ByteLMStandIn):
        """The stand-in returning extras in its ModelOutput (bltx/model/output.py): an aux
        loss on a parameter that the logits never read, and a step statistic."""

        def __init__(self, cfg, **context):
            super().__init__(cfg, **context)
            self.aux_only = nn.Parameter(torch.ones(3))

        def forward(self, ids, targets=None, **kw):
            out = super().forward(ids, targets, **kw)
            return out._replace(aux_losses={"aux_penalty": self.aux_only.pow(2).sum()},
                                stats={"stand_in_stat": torch.tensor(0.25)})


def test_trainer_runs_a_plugin_model_and_logs_patch_statistics(tmp_path, capsys):
    from bltx.train.trainer import Trainer

    path = write_recipe(tmp_path, model={"type": "test_bytelm", "stride": 4}, training={"steps": 4})
    Trainer(load_recipe(path)).fit()
    rows = read_metrics(tmp_path / "run")
    assert [r["step"] for r in rows] == [1, 2, 3, 4]
    assert all(r["mean_patch_length"] == 4.0 for r in rows)
    assert all(r["patches_per_s"] > 0 and r["bytes_per_s"] > 0 for r in rows)
    line = next(x for x in capsys.readouterr().out.splitlines() if x.startswith("step "))
    for field in ("step 1/4", "loss", "bpb", "bytes/s", "patches/s", "patch_len 4.00", "lr", "gnorm"):
        assert field in line


def test_trainer_adds_aux_losses_and_logs_model_extras(tmp_path):
    """The ModelOutput extras: the aux loss joins the loss (its parameter, read by nothing
    else, gets a gradient and moves) and both dicts are logged by name as window means."""
    from bltx.train.trainer import Trainer

    path = write_recipe(tmp_path, model={"type": "test_bytelm_extras"}, training={"steps": 2},
                        checkpoint={"enable": False})
    trainer = Trainer(load_recipe(path))
    before = trainer.model.aux_only.detach().clone()
    trainer.fit()
    assert not torch.equal(trainer.model.aux_only.detach(), before)
    rows = read_metrics(tmp_path / "run")
    assert [r["stand_in_stat"] for r in rows] == [0.25, 0.25]
    # Step 1 logs the penalty of the initial weights; step 2's is smaller (it was minimised).
    assert rows[0]["aux_penalty"] == pytest.approx(float(before.pow(2).sum()), rel=1e-5)
    assert rows[1]["aux_penalty"] < rows[0]["aux_penalty"]
