"""torchtitan's Llama 3 in the latent slot (plugins/torchtitan_backbone.py), when installed."""

import pytest
import torch

import plugins.torchtitan_backbone as titan

pytestmark = pytest.mark.skipif(
    titan.Transformer is None,
    reason=f"torchtitan not importable (install the 'titan' extra): {titan.TORCHTITAN_ERROR}",
)

import bltx  # noqa: E402
from bltx.config import load_recipe  # noqa: E402
from helpers import TINY_BLT, read_metrics, write_recipe  # noqa: E402

TITAN = {"type": "torchtitan_llama3", "dim": 64, "n_layers": 2, "n_heads": 4, "n_kv_heads": 2,
         "multiple_of": 32, "max_seq_len": 128}


def test_latent_is_torchtitans_model_and_causal():
    torch.set_num_threads(1)
    torch.manual_seed(0)
    latent = bltx.build("latent", TITAN)
    latent.init_weights()
    assert isinstance(latent.model, titan.Transformer)
    assert latent.model.tok_embeddings is None and latent.model.output is None
    x = torch.randn(2, 10, 64)
    with torch.no_grad():
        y = latent(x)
        x2 = x.clone()
        x2[:, 6:] += 1.0
        y2 = latent(x2)
    assert y.shape == x.shape
    assert torch.equal(y[:, :6], y2[:, :6]) and not torch.allclose(y[:, 6:], y2[:, 6:])
    assert latent.forward_flops(40, 4.0) > 0


def test_blt_plan_treats_titan_blocks_as_llama_blocks():
    from bltx.parallel.plans import is_llama_block

    latent = bltx.build("latent", TITAN)
    assert all(is_llama_block(block) for block in latent.model.layers.values())


def test_blt_with_torchtitan_latent_trains(tmp_path):
    from bltx.train.trainer import Trainer

    path = write_recipe(tmp_path, model={**TINY_BLT, "latent": TITAN}, training={"steps": 4},
                        job={"plugins": ["plugins.torchtitan_backbone"]})
    Trainer(load_recipe(path)).fit()
    rows = read_metrics(tmp_path / "run")
    assert len(rows) == 4 and rows[-1]["loss"] < rows[0]["loss"]


def test_too_many_patches_is_a_clear_error():
    latent = bltx.build("latent", {**TITAN, "max_seq_len": 4})
    with pytest.raises(bltx.ConfigError, match="max_seq_len"):
        latent(torch.randn(1, 5, 64))
