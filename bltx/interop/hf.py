"""Hugging Face transformers `BltForCausalLM` <-> bltx BLT: configs and every weight.

    table = recipe_from_hf_config(hf_model.config)   # bltx [model] table
    model = from_hf(hf_model)                          # bltx BLT with HF's weights
    hf    = to_hf(model)                               # BltForCausalLM with bltx's weights
    hf_config_from_recipe(table)                       # BltConfig for a bltx model table

Behaviour preserved on import: HF's encoder re-pools patch queries before every
cross-attention (`cross_attn_repool`), its global transformer has no final norm, local
encoder and decoder share one sliding window, realtime patching uses the global entropy
rule, and without an in-forward patcher HF patches every byte. A bltx model using features
HF lacks (monotonic rule, mean pooling, other patchers, ...) cannot be exported: one-line
ConfigError naming the feature. `transformers` is imported lazily (a test dependency).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import torch

from bltx.errors import CheckpointError, ConfigError
from bltx.interop.hf_config import hf_config_from_recipe, recipe_from_hf_config  # noqa: F401  (re-exported)
from bltx.registry import build

RECIPE_FILE = "model.toml"
WEIGHTS_FILE = "model.pt"


# -- weights ------------------------------------------------------------------------------------

_LAYER_PARTS = (
    ("attention.wq.", "self_attn.q_proj."),
    ("attention.wk.", "self_attn.k_proj."),
    ("attention.wv.", "self_attn.v_proj."),
    ("attention.wo.", "self_attn.o_proj."),
    ("attention_norm.", "input_layernorm."),
    ("ffn_norm.", "post_attention_layernorm."),
    ("feed_forward.w1.", "mlp.gate_proj."),
    ("feed_forward.w3.", "mlp.up_proj."),
    ("feed_forward.w2.", "mlp.down_proj."),
)
_CROSS_PARTS = (
    ("wq.", "q_proj."),
    ("wk.", "k_proj."),
    ("wv.", "v_proj."),
    ("wo.", "o_proj."),
    ("q_norm.", "q_norm."),
    ("k_norm.", "k_norm."),
)
_PLAIN = (
    ("byte_embedder.byte_table.", "model.local_encoder.embed_tokens."),
    ("byte_embedder.hash_table.", "model.encoder_hash_tok_embedding."),
    ("encoder.patch_proj.", "model.local_encoder.patch_embedding_projection."),
    ("encoder.out_proj.", "model.global_transformer.token_embedding_projection."),
    ("decoder.patch_proj.", "model.local_decoder.patch_embedding_projection."),
    ("decoder.norm.", "model.local_decoder.norm."),
    ("decoder.output.", "lm_head."),
    ("patcher.entropy_model.tok_embeddings.", "model.patcher.embed_tokens."),
    ("patcher.entropy_model.norm.", "model.patcher.norm."),
    ("patcher.entropy_model.output.", "model.patcher.lm_head."),
)
_STACKS = (
    ("encoder.layers.", "model.local_encoder.layers."),
    ("latent.layers.", "model.global_transformer.layers."),
    ("decoder.layers.", "model.local_decoder.layers."),
    ("patcher.entropy_model.layers.", "model.patcher.layers."),
)


def bltx_key_to_hf(key: str, encoder_cross_index=lambda i: i) -> str | None:
    """HF state-dict name of a bltx weight (None if it has no HF counterpart).

    `encoder_cross_index` maps a bltx encoder cross-attention key (the layer it follows) to
    HF's list index (0 when HF has a single encoder cross-attention).
    """
    for ours, theirs in _PLAIN:
        if key.startswith(ours):
            return theirs + key[len(ours):]
    for ours, theirs in _STACKS:
        if key.startswith(ours):
            idx, rest = key[len(ours):].split(".", 1)
            for a, b in _LAYER_PARTS:
                if rest.startswith(a):
                    return f"{theirs}{idx}.{b}{rest[len(a):]}"
            return None
    m = re.match(r"(encoder|decoder)\.cross_attn\.(\d+)\.(.*)", key)
    if m:
        side, idx, rest = m.group(1), int(m.group(2)), m.group(3)
        if side == "encoder":
            idx = encoder_cross_index(idx)
        for a, b in _CROSS_PARTS:
            if rest.startswith(a):
                return f"model.local_{side}.cross_attn_layers.{idx}.{b}{rest[len(a):]}"
    return None


def _key_map(model) -> dict[str, str]:
    """bltx name -> HF name for every tensor in `model.state_dict()`."""
    return hf_key_map(model, list(model.state_dict()))


def hf_key_map(model, keys: list[str]) -> dict[str, str]:
    """bltx name -> HF name for each of `keys` (bltx state-dict names of `model`, a BLT);
    ConfigError on one HF has no counterpart for."""
    enc = model.encoder
    single = len(enc.cross_attn) == 1 and not enc.cfg.cross_attn_all_layers
    index = (lambda i: 0) if single else (lambda i: i)
    out = {}
    for key in keys:
        hf_key = bltx_key_to_hf(key, index)
        if hf_key is None:
            raise ConfigError(f"bltx weight '{key}' has no HF BltForCausalLM counterpart")
        out[key] = hf_key
    return out


def state_dict_to_hf(model) -> dict[str, torch.Tensor]:
    sd = model.state_dict()
    return {hf: sd[ours] for ours, hf in _key_map(model).items()}


def state_dict_from_hf(model, hf_state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """bltx state dict for `model` taken from an HF state dict; missing/extra keys -> error."""
    mapping = _key_map(model)
    missing = [hf for hf in mapping.values() if hf not in hf_state]
    extra = sorted(set(hf_state) - set(mapping.values()))
    if missing or extra:
        raise CheckpointError(
            f"HF weights do not fit the converted config: missing {missing[:3]}, unexpected {extra[:3]}"
        )
    return {ours: hf_state[hf] for ours, hf in mapping.items()}


def from_hf(hf_model) -> Any:
    """bltx BLT with the config and every weight (entropy model included) of `hf_model`."""
    if type(hf_model).__name__ != "BltForCausalLM":
        raise ConfigError(f"from_hf expects a transformers BltForCausalLM, got {type(hf_model).__name__}")
    table = recipe_from_hf_config(hf_model.config)
    hf_state = hf_model.state_dict()
    dtype = next(iter(hf_state.values())).dtype
    with torch.device("meta"):
        model = build("model", table, where="model")
    model.to_empty(device="cpu")
    model.to(dtype)
    model.load_state_dict(state_dict_from_hf(model, hf_state), strict=True)
    return model


def to_hf(model) -> Any:
    """transformers BltForCausalLM carrying the config and every weight of bltx `model`."""
    from transformers import BltForCausalLM

    hf = BltForCausalLM(hf_config_from_recipe(model.cfg))
    sd = state_dict_to_hf(model)
    hf.to(next(iter(sd.values())).dtype)
    missing, unexpected = hf.load_state_dict(sd, strict=False)
    missing = [k for k in missing if not k.endswith("inv_freq")]
    if missing or unexpected:
        raise CheckpointError(f"HF model does not fit: missing {missing[:3]}, unexpected {unexpected[:3]}")
    hf.eval()
    return hf


# -- directories (tools/convert_hf.py) ----------------------------------------------------------


def model_table(model) -> dict:
    from bltx.schema import to_table

    return {"type": "blt", **to_table(model.cfg)}


def save_bltx_dir(model, out_dir: str | Path) -> Path:
    """Write `model.toml` ([model] table) and `model.pt` (state dict) into `out_dir`."""
    from bltx.config import dumps_toml

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / RECIPE_FILE).write_text(dumps_toml({"model": model_table(model)}) + "\n", encoding="utf-8")
    torch.save(model.state_dict(), out / WEIGHTS_FILE)
    return out


def convert_hf_dir(hf_dir: str | Path, out_dir: str | Path) -> Path:
    """HF `save_pretrained` folder -> bltx folder (model.toml + model.pt)."""
    from transformers import AutoConfig, BltForCausalLM

    src = Path(hf_dir)
    if not (src / "config.json").is_file():
        raise CheckpointError(f"{src} is not a Hugging Face model folder (no config.json)")
    cfg = AutoConfig.from_pretrained(src)
    if getattr(cfg, "model_type", None) != "blt":
        raise ConfigError(f"{src}: model_type is '{getattr(cfg, 'model_type', None)}', expected 'blt'")
    hf = BltForCausalLM.from_pretrained(src)
    return save_bltx_dir(from_hf(hf), out_dir)
