"""FLOPs per byte: per-component accounting from the config and a mean patch length."""

import pytest
import torch

from bltx.eval.flops import flops_per_byte, training_flops_per_byte
from bltx.model.debug import tiny_table
from bltx.registry import build

PARTS = {"entropy_model", "byte_embedder", "encoder", "encoder_cross_attn", "latent",
         "decoder", "decoder_cross_attn", "head"}


def test_components_and_total():
    f = flops_per_byte(tiny_table(), mean_patch_length=4.0, seq_len=64)
    assert set(f) == PARTS | {"total"}
    assert f["total"] == pytest.approx(sum(v for k, v in f.items() if k != "total"))
    assert all(v >= 0 for v in f.values())


def test_latent_scales_with_patch_length_and_matmuls_are_two_per_param():
    table = tiny_table()
    f4 = flops_per_byte(table, 4.0, 64)
    f8 = flops_per_byte(table, 8.0, 64)
    # Latent matmul part halves with twice the patch length; byte-level parts do not change.
    assert f8["latent"] < f4["latent"] * 0.51
    assert f8["encoder"] == f4["encoder"] and f8["head"] == f4["head"]
    model = build("model", table)
    latent_params = sum(p.numel() for n, p in model.latent.named_parameters() if not n.endswith("norm.weight"))
    attn = flops_per_byte(table, 1.0, 1)["latent"] - 2 * latent_params  # ctx = 1 patch
    lat = model.latent.cfg
    assert attn == pytest.approx(lat.n_layers * 4 * lat.dim * 1)
    assert flops_per_byte(table, 1.0, 64)["head"] == 2 * 32 * 260


def test_training_is_three_times_forward_except_frozen_entropy_model():
    fwd = flops_per_byte(tiny_table(), 4.5, 128)
    train = training_flops_per_byte(tiny_table(), 4.5, 128)
    assert train["latent"] == pytest.approx(3 * fwd["latent"])
    assert train["entropy_model"] == pytest.approx(fwd["entropy_model"])
    static = flops_per_byte(tiny_table(patcher={"type": "static", "stride": 4}), 4.0, 128)
    assert static["entropy_model"] == 0


def test_accepts_model_and_config():
    model = build("model", tiny_table())
    assert flops_per_byte(model, 4.0, 64) == flops_per_byte(model.cfg, 4.0, 64) == flops_per_byte(tiny_table(), 4.0, 64)
