"""Byte-ifying: a BLT latent initialised from a Hugging Face Llama checkpoint
(bltx/interop/llama.py) holds its layers' weights and computes the same function."""

import json

import pytest
import torch

import bltx
from bltx.interop.llama import half_to_interleaved, interleaved_to_half, load_llama_into
from bltx.model.attention import attention_backend

transformers = pytest.importorskip("transformers")


@pytest.fixture(scope="module")
def llama_dir(tmp_path_factory):
    torch.manual_seed(0)
    cfg = transformers.LlamaConfig(
        vocab_size=50, hidden_size=64, intermediate_size=96, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, rope_theta=10000.0, max_position_embeddings=64,
    )
    model = transformers.LlamaForCausalLM(cfg).eval()
    folder = tmp_path_factory.mktemp("llama")
    model.save_pretrained(folder)
    return folder, model


def latent_from(folder, final_norm):
    latent = bltx.build("latent", {"type": "hf_llama", "path": str(folder), "final_norm": final_norm},
                        backend=attention_backend("sdpa"))
    latent.init_weights()
    return latent.eval()


def test_rope_permutation_round_trips():
    w = torch.randn(64, 32)
    assert torch.equal(interleaved_to_half(half_to_interleaved(w, 4), 4), w)


def test_latent_weights_equal_the_llama_layers(llama_dir):
    folder, hf = llama_dir
    latent = latent_from(folder, final_norm=True)
    assert latent.dim == 64 and len(latent.layers) == 2 and latent.cfg.kv_heads == 2
    for i, layer in enumerate(hf.model.layers):
        ours = latent.layers[str(i)]
        assert torch.equal(interleaved_to_half(ours.attention.wq.weight, 4), layer.self_attn.q_proj.weight)
        assert torch.equal(interleaved_to_half(ours.attention.wk.weight, 2), layer.self_attn.k_proj.weight)
        assert torch.equal(ours.attention.wv.weight, layer.self_attn.v_proj.weight)
        assert torch.equal(ours.attention.wo.weight, layer.self_attn.o_proj.weight)
        assert torch.equal(ours.feed_forward.w1.weight, layer.mlp.gate_proj.weight)
        assert torch.equal(ours.feed_forward.w3.weight, layer.mlp.up_proj.weight)
        assert torch.equal(ours.feed_forward.w2.weight, layer.mlp.down_proj.weight)
        assert torch.equal(ours.attention_norm.weight, layer.input_layernorm.weight)
        assert torch.equal(ours.ffn_norm.weight, layer.post_attention_layernorm.weight)
    assert torch.equal(latent.norm.weight, hf.model.norm.weight)
    # Embeddings and head are dropped.
    assert not any("embed" in k or "lm_head" in k for k in latent.state_dict())


@pytest.mark.parametrize("final_norm", [True, False])
def test_latent_reproduces_llama_hidden_states(llama_dir, final_norm):
    folder, hf = llama_dir
    latent = latent_from(folder, final_norm)
    torch.manual_seed(1)
    x = torch.randn(2, 11, 64)
    with torch.no_grad():
        ours = latent(x)
        if final_norm:
            ref = hf.model(inputs_embeds=x).last_hidden_state
        else:  # the last layer's output before Llama's final norm
            norm, hf.model.norm = hf.model.norm, torch.nn.Identity()
            try:
                ref = hf.model(inputs_embeds=x).last_hidden_state
            finally:
                hf.model.norm = norm
    torch.testing.assert_close(ours, ref, atol=1e-5, rtol=1e-4)


def test_blt_byteified_trains_and_keeps_the_weights_at_init(llama_dir, tmp_path):
    from bltx.config import load_recipe
    from bltx.train.trainer import Trainer
    from helpers import TINY_BLT, read_metrics, write_recipe

    folder, hf = llama_dir
    model = bltx.build_model({**TINY_BLT, "latent": {"type": "hf_llama", "path": str(folder)}})
    assert torch.equal(model.latent.layers["1"].attention.wv.weight, hf.model.layers[1].self_attn.v_proj.weight)
    path = write_recipe(tmp_path, model={**TINY_BLT, "latent": {"type": "hf_llama", "path": str(folder)}},
                        training={"steps": 2})
    Trainer(load_recipe(path)).fit()
    assert len(read_metrics(tmp_path / "run")) == 2


def test_mismatched_sizes_and_rope_scaling_are_clear_errors(llama_dir, tmp_path):
    folder, _ = llama_dir
    other = bltx.build("latent", {"type": "transformer", "dim": 64, "n_layers": 3, "n_heads": 4},
                       backend=attention_backend("sdpa"))
    with pytest.raises(bltx.CheckpointError, match="n_layers"):
        load_llama_into(other, folder)
    scaled = tmp_path / "scaled"
    scaled.mkdir()
    cfg = json.loads((folder / "config.json").read_text())
    cfg["rope_parameters"] = {"rope_type": "llama3", "rope_theta": 500000.0, "factor": 8.0}
    (scaled / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(bltx.BltxError, match="ignore_rope_scaling"):
        bltx.build("latent", {"type": "hf_llama", "path": str(scaled)}, backend=attention_backend("sdpa"))
