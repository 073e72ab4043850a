"""Model FLOPs per byte for a BLT configuration, per component (BLT paper, appendix on FLOPs).

Accounting (forward pass, per byte):
  - every matmul costs 2 * (weights) per row it is applied to;
  - self-attention scores and weighted sum cost 2 * 2 * (n_heads * head_dim) * ctx per query,
    with ctx = the attention context (the sliding window for local layers, capped by the
    sequence; the patch count T / L for the latent), the paper's convention;
  - per-patch work (latent transformer, patch query/key projections) is divided by the mean
    patch length L;
  - embedding lookups are free; the hash embedder's sums are counted as additions;
  - the entropy model (only with the entropy patcher) runs forward only.
Training FLOPs are 3x forward for trained components (forward + backward) and 1x for the
frozen entropy model.
"""

from __future__ import annotations

from typing import Any

from bltx.bytes import VOCAB_SIZE
from bltx.errors import ConfigError
from bltx.model.transformer import TransformerDims
from bltx.registry import validate


def _layer_matmul(d: TransformerDims) -> float:
    hd = d.head_dim
    attn = d.dim * d.n_heads * hd * 2 + d.dim * d.kv_heads * hd * 2  # wq, wo, wk, wv
    ffn = 3 * d.dim * d.hidden_dim
    return 2.0 * (attn + ffn)


def _layer_attention(d: TransformerDims, ctx: float) -> float:
    return 2.0 * 2.0 * d.n_heads * d.head_dim * ctx


def _stack(d: TransformerDims, ctx: float) -> float:
    return d.n_layers * (_layer_matmul(d) + _layer_attention(d, ctx))


def _ctx(window: int | None, seq_len: int) -> int:
    return seq_len if window is None else min(window, seq_len)


def _cross(d: TransformerDims, n: int) -> tuple[float, float]:
    """(query-side projection FLOPs per query, key/value-side FLOPs per key) of one layer."""
    hd = d.head_dim
    q_side = 2.0 * 2 * d.dim * d.n_heads * hd  # wq and wo
    kv_side = 2.0 * 2 * d.dim * d.kv_heads * hd  # wk and wv
    return q_side * n, kv_side * n


def _dims(kind: str, table: dict, where: str):
    cfg = validate(kind, table, where)
    if not isinstance(cfg, TransformerDims):
        raise ConfigError(f"{where}: FLOP accounting knows transformer components only, got type '{table.get('type')}'")
    return cfg


def flops_per_byte(model: Any, mean_patch_length: float, seq_len: int, training: bool = False) -> dict[str, float]:
    """FLOPs per byte by component ('entropy_model', 'byte_embedder', 'encoder',
    'encoder_cross_attn', 'latent', 'decoder', 'decoder_cross_attn', 'head') and 'total'.

    `model`: a BLT module, its Config, or a model table. `mean_patch_length` L: bytes per
    patch (measured, or the stride for static patching). `seq_len`: bytes per sequence.
    """
    from bltx.model.blt import BLT
    from bltx.schema import to_dataclass

    if isinstance(model, BLT):
        cfg = model.cfg
    elif isinstance(model, BLT.Config):
        cfg = model
    else:
        cfg = to_dataclass(BLT.Config, {k: v for k, v in model.items() if k != "type"}, "model")
    if mean_patch_length <= 0 or seq_len < 1:
        raise ConfigError("mean_patch_length must be > 0 and seq_len >= 1")
    L = float(mean_patch_length)
    enc = _dims("encoder", cfg.encoder, "model.encoder")
    lat = _dims("latent", cfg.latent, "model.latent")
    dec = _dims("decoder", cfg.decoder, "model.decoder")
    emb = validate("byte_embedder", cfg.byte_embedder, "model.byte_embedder")

    out: dict[str, float] = {}
    entropy = 0.0
    if cfg.patcher.get("type") == "entropy":
        pat = validate("patcher", cfg.patcher, "model.patcher")
        em = _dims("entropy_model", pat.model, "model.patcher.model")
        entropy = _stack(em, _ctx(em.window, seq_len)) + 2.0 * em.dim * VOCAB_SIZE
    out["entropy_model"] = entropy
    n_tables = getattr(emb, "hash_functions", 0) * len(getattr(emb, "ngram_sizes", []))
    out["byte_embedder"] = float(n_tables * enc.dim)

    k_enc = getattr(enc, "cross_attn_k", 1)
    out["encoder"] = _stack(enc, _ctx(getattr(enc, "window", None), seq_len))
    n_cross_enc = enc.n_layers if getattr(enc, "cross_attn_all_layers", False) else 1
    q_side, kv_side = _cross(enc, 1)
    per_patch = n_cross_enc * (q_side * k_enc + _layer_attention(enc, L) * k_enc)
    per_patch += 2.0 * enc.dim * enc.dim * k_enc  # pooled -> k queries
    if enc.dim * k_enc != lat.dim:
        per_patch += 2.0 * enc.dim * k_enc * lat.dim  # concat -> latent width
    out["encoder_cross_attn"] = n_cross_enc * kv_side + per_patch / L

    out["latent"] = _stack(lat, max(seq_len / L, 1.0)) / L

    k_dec = getattr(dec, "cross_attn_k", 1)
    out["decoder"] = _stack(dec, _ctx(getattr(dec, "window", None), seq_len))
    n_cross_dec = dec.n_layers if getattr(dec, "cross_attn_all_layers", False) else 1
    q_side, kv_side = _cross(dec, 1)
    per_byte = n_cross_dec * (q_side + _layer_attention(dec, k_dec))
    per_patch = n_cross_dec * kv_side * k_dec + 2.0 * lat.dim * dec.dim * k_dec
    out["decoder_cross_attn"] = per_byte + per_patch / L
    out["head"] = 2.0 * dec.dim * VOCAB_SIZE

    if training:
        out = {name: value * (1.0 if name == "entropy_model" else 3.0) for name, value in out.items()}
    out["total"] = sum(out.values())
    return out


def training_flops_per_byte(model: Any, mean_patch_length: float, seq_len: int) -> dict[str, float]:
    """`flops_per_byte(..., training=True)`: 3x forward for trained parts, 1x entropy model."""
    return flops_per_byte(model, mean_patch_length, seq_len, training=True)
