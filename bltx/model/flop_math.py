"""Forward FLOPs of the transformer pieces the components are built from.

Components report their own FLOPs (`forward_flops`, bltx/protocols.py) and use these
helpers; the engine's one counter (bltx/eval/flops.py) only sums what they report.

Convention (the BLT paper's, forward pass):
  - a matmul costs 2 FLOPs per weight per row it is applied to;
  - attention (scores and weighted sum) costs 2 * 2 * n_heads * head_dim FLOPs per query and
    per key the query may read: `ctx` keys. Causal self-attention is counted at the full
    context, as dense SDPA executes it (not half); a sliding window caps ctx at the window;
  - norms, softmax, rotary embeddings, pooling and residual additions are not counted.
`torch.utils.flop_counter.FlopCounterMode` follows the same matmul rule, so the tests check
the components against it (tests/eval/test_flops.py).
"""

from __future__ import annotations

from bltx.model.transformer import TransformerDims


def layer_matmul(d: TransformerDims) -> float:
    """Projections and feed-forward of one block, per position."""
    hd = d.head_dim
    attn = d.dim * d.n_heads * hd * 2 + d.dim * d.kv_heads * hd * 2  # wq, wo, wk, wv
    ffn = 3 * d.dim * d.hidden_dim
    return 2.0 * (attn + ffn)


def attention(d: TransformerDims, ctx: float) -> float:
    """Scores and weighted sum of one attention layer, per query reading `ctx` keys."""
    return 2.0 * 2.0 * d.n_heads * d.head_dim * ctx


def stack(d: TransformerDims, ctx: float) -> float:
    """All `n_layers` blocks, per position."""
    return d.n_layers * (layer_matmul(d) + attention(d, ctx))


def context(window: int | None, seq_len: float) -> float:
    """Keys a query of a (windowed) causal layer is counted against."""
    return seq_len if window is None else min(window, seq_len)


def cross_projections(d: TransformerDims) -> tuple[float, float]:
    """(wq + wo FLOPs per query, wk + wv FLOPs per key) of one cross-attention layer."""
    hd = d.head_dim
    return 2.0 * 2 * d.dim * d.n_heads * hd, 2.0 * 2 * d.dim * d.kv_heads * hd
