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

from bltx.bytes import VOCAB_SIZE
from bltx.errors import CheckpointError, ConfigError
from bltx.registry import build, validate

RECIPE_FILE = "model.toml"
WEIGHTS_FILE = "model.pt"


# -- configs ------------------------------------------------------------------------------------


def _theta(sub, where: str) -> float:
    rope = getattr(sub, "rope_parameters", None) or {}
    kind = rope.get("rope_type", "default")
    if kind != "default":
        raise ConfigError(f"HF {where}: rope_type '{kind}' is not supported (only 'default' RoPE)")
    return float(rope.get("rope_theta", getattr(sub, "default_theta", 10000.0)))


def _dims(sub, where: str) -> dict:
    act = getattr(sub, "hidden_act", "silu")
    if act != "silu":
        raise ConfigError(f"HF {where}: hidden_act '{act}' is not supported (SwiGLU with silu only)")
    return {
        "dim": sub.hidden_size,
        "n_layers": sub.num_hidden_layers,
        "n_heads": sub.num_attention_heads,
        "n_kv_heads": sub.num_key_value_heads,
        "ffn_dim": sub.intermediate_size,
        "norm_eps": float(sub.rms_norm_eps),
        "rope_theta": _theta(sub, where),
    }


def recipe_from_hf_config(config) -> dict:
    """bltx model table (`{"type": "blt", ...}`) equivalent to an HF `BltConfig`."""
    if getattr(config, "model_type", None) != "blt":
        raise ConfigError(f"expected an HF BltConfig (model_type 'blt'), got {type(config).__name__}")
    if config.vocab_size != VOCAB_SIZE:
        raise ConfigError(f"HF config vocab_size is {config.vocab_size}; bltx byte models use {VOCAB_SIZE}")
    enc, dec, glob, pat = config.encoder_config, config.decoder_config, config.global_config, config.patcher_config
    k = config.cross_attn_k
    for name, sub in (("encoder_config", enc), ("decoder_config", dec)):
        if sub.cross_attn_k != k:
            raise ConfigError(f"HF {name}.cross_attn_k ({sub.cross_attn_k}) differs from cross_attn_k ({k})")
    if dec.hidden_size != enc.hidden_size:
        raise ConfigError(
            f"HF decoder hidden_size ({dec.hidden_size}) differs from encoder hidden_size ({enc.hidden_size})"
        )
    if dec.hidden_size_global != glob.hidden_size:
        raise ConfigError(
            f"HF decoder_config.hidden_size_global ({dec.hidden_size_global}) differs from the global "
            f"transformer's hidden_size ({glob.hidden_size})"
        )
    window = config.local_attention_window_len
    if config.patch_in_forward and config.patching_mode == "entropy":
        patcher = {
            "type": "entropy",
            "rule": "global",
            "threshold": float(config.patching_threshold),
            "max_patch_length": config.max_patch_length,
            "model": {"type": "transformer", **_dims(pat, "patcher_config"), "window": pat.sliding_window},
        }
    elif not config.patch_in_forward:
        if config.max_patch_length not in (None, 1) and config.max_patch_length < 1:
            raise ConfigError(f"HF max_patch_length {config.max_patch_length} is invalid")
        patcher = {"type": "byte"}
    else:
        raise ConfigError(
            f"HF patching_mode '{config.patching_mode}' with patch_in_forward is not supported; "
            f"only 'entropy' patching converts"
        )
    return {
        "type": "blt",
        "attention": "sdpa",
        "patcher": patcher,
        "byte_embedder": {
            "type": "hash_ngram",
            "ngram_sizes": list(config.encoder_hash_byte_group_size),
            "hash_vocab": config.encoder_hash_byte_group_vocab,
            "hash_functions": config.encoder_hash_byte_group_nb_functions,
        },
        "encoder": {
            "type": "local",
            **_dims(enc, "encoder_config"),
            "window": window,
            "cross_attn_k": k,
            "cross_attn_all_layers": bool(enc.cross_attn_all_layers),
            "cross_attn_repool": bool(enc.cross_attn_all_layers),
            "pooling": "max",
        },
        "latent": {"type": "transformer", **_dims(glob, "global_config"), "final_norm": False},
        "decoder": {
            "type": "local",
            **_dims(dec, "decoder_config"),
            "window": window,
            "cross_attn_k": k,
            "cross_attn_all_layers": bool(dec.cross_attn_all_layers),
        },
    }


def _hf_sub(c, *, window=None, extra: dict | None = None) -> dict:
    out = {
        "hidden_size": c.dim,
        "num_hidden_layers": c.n_layers,
        "num_attention_heads": c.n_heads,
        "num_key_value_heads": c.kv_heads,
        "intermediate_size": c.hidden_dim,
        "rms_norm_eps": c.norm_eps,
        "rope_parameters": {"rope_type": "default", "rope_theta": c.rope_theta},
    }
    out.update(extra or {})
    return out


def _unsupported(feature: str) -> ConfigError:
    return ConfigError(f"cannot export to HF transformers: {feature} has no HF BltConfig equivalent")


def hf_config_from_recipe(table) -> Any:
    """HF `BltConfig` for a bltx model table (dict, or a BLT.Config)."""
    from transformers import BltConfig

    from bltx.model.blt import BLT
    from bltx.schema import to_dataclass

    cfg = table if isinstance(table, BLT.Config) else to_dataclass(
        BLT.Config, {k: v for k, v in table.items() if k != "type"}, "model"
    )
    if isinstance(table, dict) and table.get("type", "blt") != "blt":
        raise _unsupported(f"model type '{table['type']}'")
    for kind, name in (("byte_embedder", "hash_ngram"), ("encoder", "local"), ("latent", "transformer"), ("decoder", "local")):
        got = getattr(cfg, kind).get("type")
        if got != name:
            raise _unsupported(f"model.{kind}.type = '{got}'")
    emb = validate("byte_embedder", cfg.byte_embedder, "model.byte_embedder")
    enc = validate("encoder", cfg.encoder, "model.encoder")
    lat = validate("latent", cfg.latent, "model.latent")
    dec = validate("decoder", cfg.decoder, "model.decoder")
    if enc.cross_attn_k != dec.cross_attn_k:
        raise _unsupported(f"encoder.cross_attn_k ({enc.cross_attn_k}) != decoder.cross_attn_k ({dec.cross_attn_k})")
    if enc.window != dec.window:
        raise _unsupported(f"encoder.window ({enc.window}) != decoder.window ({dec.window})")
    if enc.pooling != "max":
        raise _unsupported(f"encoder.pooling = '{enc.pooling}'")
    if enc.cross_attn_all_layers and not enc.cross_attn_repool:
        raise _unsupported("encoder.cross_attn_all_layers without cross_attn_repool")
    if lat.final_norm:
        raise _unsupported("latent.final_norm = true")
    if cfg.decoder_lookahead is False:
        raise _unsupported("decoder_lookahead = false")
    if emb.hash_functions < 1 or not emb.ngram_sizes:
        raise _unsupported("a byte embedder without hash tables")
    ptype = cfg.patcher.get("type")
    if ptype == "entropy":
        pat = validate("patcher", cfg.patcher, "model.patcher")
        if pat.rule != "global":
            raise _unsupported(f"patcher.rule = '{pat.rule}'")
        if pat.model.get("type") != "transformer":
            raise _unsupported(f"patcher.model.type = '{pat.model.get('type')}'")
        em = validate("entropy_model", pat.model, "model.patcher.model")
        patching = {
            "patch_in_forward": True,
            "patching_mode": "entropy",
            "patching_threshold": pat.threshold,
            "max_patch_length": pat.max_patch_length,
            "patcher_config": _hf_sub(em, extra={"sliding_window": em.window}),
        }
    elif ptype == "byte":
        patching = {"patch_in_forward": False, "patching_mode": "byte"}
    else:
        raise _unsupported(f"patcher type '{ptype}'")
    k = enc.cross_attn_k
    local_extra = {"cross_attn_k": k, "hidden_size_global": lat.dim}
    return BltConfig(
        vocab_size=VOCAB_SIZE,
        local_attention_window_len=enc.window,
        cross_attn_k=k,
        encoder_hash_byte_group_size=list(emb.ngram_sizes),
        encoder_hash_byte_group_vocab=emb.hash_vocab,
        encoder_hash_byte_group_nb_functions=emb.hash_functions,
        encoder_config=_hf_sub(enc, extra={**local_extra, "cross_attn_all_layers": enc.cross_attn_all_layers}),
        decoder_config=_hf_sub(dec, extra={**local_extra, "cross_attn_all_layers": dec.cross_attn_all_layers}),
        global_config=_hf_sub(lat),
        **patching,
    )


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
    enc = model.encoder
    single = len(enc.cross_attn) == 1 and not enc.cfg.cross_attn_all_layers
    index = (lambda i: 0) if single else (lambda i: i)
    out = {}
    for key in model.state_dict():
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


def load_bltx_dir(path: str | Path):
    """Build the model described by `model.toml` in `path` and load `model.pt`."""
    from bltx.config import read_toml

    d = Path(path)
    if not (d / RECIPE_FILE).is_file() or not (d / WEIGHTS_FILE).is_file():
        raise CheckpointError(f"{d} is not a bltx model folder: expected {RECIPE_FILE} and {WEIGHTS_FILE}")
    table = read_toml(d / RECIPE_FILE).get("model")
    if not isinstance(table, dict):
        raise CheckpointError(f"{d / RECIPE_FILE} has no [model] table")
    with torch.device("meta"):
        model = build("model", table, where="model")
    state = torch.load(d / WEIGHTS_FILE, map_location="cpu", weights_only=True)
    model.to_empty(device="cpu")
    model.to(next(iter(state.values())).dtype)
    missing, unexpected = model.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise CheckpointError(
            f"{d / WEIGHTS_FILE} does not fit {RECIPE_FILE}: missing {missing[:3]}, unexpected {unexpected[:3]}"
        )
    return model


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


def convert_bltx_dir(bltx_dir: str | Path, out_dir: str | Path) -> Path:
    """bltx folder (model.toml + model.pt) -> HF `save_pretrained` folder."""
    hf = to_hf(load_bltx_dir(bltx_dir))
    out = Path(out_dir)
    hf.save_pretrained(out)
    return out
