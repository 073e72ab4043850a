"""Hugging Face `BltConfig` <-> bltx [model] table (the config half of bltx/interop/hf.py).

Behaviour preserved on import: HF's encoder re-pools patch queries before every
cross-attention (`cross_attn_repool`), its global transformer has no final norm, local
encoder and decoder share one sliding window, realtime patching uses the global entropy
rule, and without an in-forward patcher HF patches every byte. A bltx model using features
HF lacks cannot be exported: one-line ConfigError naming the feature.
"""

from __future__ import annotations

from typing import Any

from bltx.bytes import VOCAB_SIZE
from bltx.errors import ConfigError
from bltx.registry import validate


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
    if any(part.qkv_bias for part in (enc, lat, dec)):
        raise _unsupported("qkv_bias = true (HF BLT's projections have no biases)")
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
        if em.qkv_bias:
            raise _unsupported("patcher.model.qkv_bias = true (HF BLT's projections have no biases)")
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
