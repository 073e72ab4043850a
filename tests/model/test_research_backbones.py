"""Latent backbones beyond the transformer: the gated linear recurrence (plain PyTorch)."""

import pytest
import torch

import bltx
from bltx.config import load_recipe
from bltx.eval.flops import flops_per_byte
from bltx.eval.flops import total_flops_per_byte as model_flops_per_byte
from bltx.model.debug import tiny_table
from bltx.model.recurrent_latent import linear_scan
from helpers import TINY_BLT, read_metrics, write_recipe

RECURRENT = {"type": "recurrent", "dim": 48, "n_layers": 2, "ffn_dim": 96}


def test_scan_matches_the_sequential_recurrence():
    torch.manual_seed(0)
    a, b = torch.rand(2, 37, 5), torch.randn(2, 37, 5)
    h, ref = torch.zeros(2, 5), []
    for t in range(37):
        h = a[:, t] * h + b[:, t]
        ref.append(h)
    torch.testing.assert_close(linear_scan(a, b), torch.stack(ref, 1))


def test_recurrent_latent_is_causal_and_compiles():
    torch.set_num_threads(1)
    torch.manual_seed(0)
    latent = bltx.build("latent", RECURRENT).eval()
    x = torch.randn(2, 12, 48)
    y = latent(x)
    x2 = x.clone()
    x2[:, 7:] += torch.randn(2, 5, 48)
    y2 = latent(x2)
    assert torch.equal(y[:, :7], y2[:, :7]) and not torch.allclose(y[:, 7:], y2[:, 7:])
    compiled = torch.compile(latent, fullgraph=True, backend="eager")  # graph capture, no codegen
    torch.testing.assert_close(compiled(x), y)


def test_blt_with_recurrent_latent_trains(tmp_path):
    from bltx.train.trainer import Trainer

    path = write_recipe(tmp_path, model={**TINY_BLT, "latent": {**RECURRENT, "dim": 64}}, training={"steps": 4})
    Trainer(load_recipe(path)).fit()
    rows = read_metrics(tmp_path / "run")
    assert len(rows) == 4 and rows[-1]["loss"] < rows[0]["loss"]


def test_flops_of_a_non_transformer_latent():
    torch.manual_seed(0)
    rec = bltx.build_model(tiny_table(latent=RECURRENT))
    ref = bltx.build_model(tiny_table())
    f_rec = model_flops_per_byte(rec, 4.0, 256, training=True)
    f_ref = model_flops_per_byte(ref, 4.0, 256, training=True)
    assert f_rec > 0 and f_ref > 0 and f_rec != f_ref
    assert model_flops_per_byte(rec, 4.0, 256, training=True) == pytest.approx(
        3 * model_flops_per_byte(rec, 4.0, 256) - 2 * flops_per_byte(rec, 4.0, 256)["patcher"])
