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


def source_config(kind: str, **extra):
    sizes = dict(vocab_size=50, hidden_size=64, intermediate_size=96, num_hidden_layers=2,
                 num_attention_heads=4, num_key_value_heads=2, rope_theta=10000.0, max_position_embeddings=64)
    if kind == "mistral":
        return transformers.MistralConfig(**sizes, **{"sliding_window": None, **extra})
    return transformers.Qwen2Config(**sizes, **{"use_sliding_window": False, **extra})


@pytest.fixture(scope="module", params=["mistral", "qwen2"])
def source_dir(request, tmp_path_factory):
    """A tiny random Mistral or Qwen2 causal LM saved with save_pretrained; every parameter
    redrawn (HF zero-initialises Qwen2's q/k/v biases, which must not hide a wrong mapping)."""
    torch.manual_seed(0)
    model = getattr(transformers, {"mistral": "MistralForCausalLM", "qwen2": "Qwen2ForCausalLM"}[request.param])(
        source_config(request.param)).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0.0, 0.2 if p.ndim > 1 else 0.5).add_(1.0 if p.ndim == 1 and p.shape[0] == 64 else 0.0)
    folder = tmp_path_factory.mktemp(request.param)
    model.save_pretrained(folder)
    return folder, model


def test_mistral_and_qwen2_latents_reproduce_their_hidden_states(source_dir):
    folder, hf = source_dir
    latent = latent_from(folder, final_norm=True)
    assert latent.cfg.qkv_bias == (hf.config.model_type == "qwen2")
    if latent.cfg.qkv_bias:  # the biases follow their rows into the interleaved rope layout
        ours, theirs = latent.layers["0"].attention, hf.model.layers[0].self_attn
        assert torch.equal(interleaved_to_half(ours.wq.bias, 4), theirs.q_proj.bias)
        assert torch.equal(interleaved_to_half(ours.wk.bias, 2), theirs.k_proj.bias)
        assert torch.equal(ours.wv.bias, theirs.v_proj.bias)
    torch.manual_seed(1)
    x = torch.randn(2, 11, 64)
    with torch.no_grad():
        torch.testing.assert_close(latent(x), hf.model(inputs_embeds=x).last_hidden_state, atol=1e-5, rtol=1e-4)


def test_other_architectures_and_windowed_sources_are_one_line(tmp_path):
    gpt2 = tmp_path / "gpt2"
    transformers.GPT2Config(n_embd=64, n_layer=1, n_head=4).save_pretrained(gpt2)
    with pytest.raises(bltx.CheckpointError, match="model_type 'gpt2' is not a supported source; supported: llama, mistral, qwen2") as info:
        bltx.build("latent", {"type": "hf_llama", "path": str(gpt2)}, backend=attention_backend("sdpa"))
    assert "\n" not in str(info.value)
    windowed = tmp_path / "windowed"
    source_config("mistral", sliding_window=16).save_pretrained(windowed)
    with pytest.raises(bltx.CheckpointError, match="window of 16 tokens.*ignore_sliding_window = true"):
        bltx.build("latent", {"type": "hf_llama", "path": str(windowed)}, backend=attention_backend("sdpa"))
    latent = bltx.build("latent", {"type": "hf_llama", "path": str(windowed), "ignore_sliding_window": True},
                        backend=attention_backend("sdpa"))
    assert latent.dim == 64 and not latent.cfg.qkv_bias
