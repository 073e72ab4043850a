"""bltx.testing: the contract checks a plugin author runs on their own part, tried on the two
worked plugins (plugins/conv_latent.py, plugins/linear_chunker.py), on built-in parts, and on
parts broken the ways new users break them; and both plugins trained through the CLI."""

from __future__ import annotations

import json
import textwrap

import pytest

from bltx.testing import check_part
from helpers import ROOT, run_cli

LATENT = {"type": "causal_conv", "dim": 48, "n_layers": 2, "kernel": 3}


def test_plugin_latent_and_chunker_pass_the_contract_checks():
    conv = check_part("latent", LATENT, ["plugins.conv_latent"])
    assert conv["causal"] and conv["flops"] and "no cache protocol" in conv["cached"]
    chunker = check_part("chunker", {"type": "delta_linear"}, ["plugins.linear_chunker"])
    assert chunker["causal"] and chunker["flops"] and "model.chunker (DeltaLinearChunker)" in chunker["cached"]


@pytest.mark.parametrize("slot, table", [
    ("latent", {"type": "transformer", "dim": 64, "n_layers": 1, "n_heads": 2}),
    ("latent", {"type": "recurrent", "dim": 64, "n_layers": 1}),
    ("chunker", {"type": "cosine", "target_length": 4.0}),
    ("patcher", {"type": "space"}),
])
def test_built_in_parts_pass_including_cached_generation(slot, table):
    assert check_part(slot, table) == {"causal": True, "cached": True, "flops": True}


def test_a_latent_that_reads_ahead_is_caught():
    with pytest.raises(AssertionError, match=r"latent 'causal_conv': not causal; the logits at byte \d+ moved"):
        check_part("latent", {**LATENT, "reads_ahead": True}, ["plugins.conv_latent"])


def test_wrong_flop_counts_are_caught(monkeypatch):
    from plugins.conv_latent import CausalConvLatent

    honest = CausalConvLatent.forward_flops
    monkeypatch.setattr(CausalConvLatent, "forward_flops", lambda self, s, p: 0.5 * honest(self, s, p))
    with pytest.raises(AssertionError, match="forward_flops says .* FlopCounterMode counted"):
        check_part("latent", LATENT, ["plugins.conv_latent"])


def test_a_plugin_without_forward_flops_names_the_method_in_one_line(tmp_path):
    (tmp_path / "noflops.py").write_text(textwrap.dedent("""
        from dataclasses import dataclass
        from torch import nn
        from bltx.registry import register

        @register("latent", "no_flops")
        class NoFlops(nn.Module):
            @dataclass
            class Config:
                dim: int = 64
            def __init__(self, cfg, **context):
                super().__init__()
                self.dim = cfg.dim
            def forward(self, x):
                return x
            def init_weights(self):
                pass

        @register("latent", "no_context")
        class NoContext(NoFlops):
            def __init__(self, cfg):  # the slot also passes backend=...
                super().__init__(cfg)
    """))
    env = {"PYTHONPATH": f"{tmp_path}:{ROOT}"}
    for latent, expected in (("no_flops", "missing: capability 'flops' (forward_flops(seq_len, patch_len))"),
                             ("no_context", "cannot be built with what the slot passes (cfg, backend)")):
        proc = run_cli(str(ROOT / "recipes/tiny.toml"), "--set", 'job.plugins=["noflops"]',
                       "--set", f'model.latent={{type = "{latent}"}}', "--dry-run", env=env)
        assert proc.returncode == 2, proc.stderr
        lines = proc.stderr.strip().splitlines()
        assert len(lines) == 1 and expected in lines[0], proc.stderr


@pytest.mark.parametrize("recipe, extra", [
    ("recipes/plugins/conv_latent.toml", ()),
    ("recipes/plugins/delta_chunker.toml", ("rate_loss", "boundary_rate")),
])
def test_plugin_recipes_train_through_the_cli(tmp_path, recipe, extra):
    proc = run_cli(str(ROOT / recipe), "--set", "training.steps=4", "--set", f"job.dump_dir={tmp_path}",
                   "--set", "eval.interval=0", "--set", "metrics.log_interval=1",
                   "--set", "checkpoint.enable=false", "--set", "metrics.tensorboard=false")
    assert proc.returncode == 0, proc.stderr
    rows = [json.loads(x) for x in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    train = [r for r in rows if r["split"] == "train"]
    assert [r["step"] for r in train] == [1, 2, 3, 4]
    assert train[-1]["loss"] < train[0]["loss"]  # it learns
    assert all(name in train[-1] for name in extra)
