"""The one FLOP counter against torch's own: every built-in component reports its forward
FLOPs (bltx/model/flop_math.py) and `torch.utils.flop_counter.FlopCounterMode` counts what
the forward really executes.

Convention checked here: matmuls (projections, feed-forward, heads) count 2 per weight per
row, exactly as FlopCounterMode counts them; attention counts each query against the keys it
may read. With SDPA's math kernel (whose matmuls FlopCounterMode sees) dense causal
self-attention and the latent match exactly. Where an attention layout executes other work
than the keys a query may read (patch cross-attention scores computed elementwise, blocked
windows computing a block of keys more than the window, the recurrent scan) the totals agree
within TOLERANCE on these shapes.
"""

import pytest
import torch
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.utils.flop_counter import FlopCounterMode

import bltx
from bltx.eval.flops import flops_per_byte

T = 32
TOLERANCE = 0.02
# A blocked window (bltx/model/window_attention.py) computes queries of a block against that
# block and the one before it: up to 2 * window keys where the counter claims `window`.
WINDOW_TOLERANCE = 0.05


def blt(latent=None, window=None, patcher=None):
    local = {"type": "local", "dim": 32, "n_heads": 2, "n_layers": 2, "window": window}
    return {
        "type": "blt",
        "patcher": patcher or {"type": "static", "stride": 4},
        "byte_embedder": {"type": "hash_ngram", "hash_vocab": 100, "ngram_sizes": [3, 4]},
        "encoder": local,
        "latent": latent or {"type": "transformer", "dim": 64, "n_layers": 2, "n_heads": 2},
        "decoder": local,
    }


def executed(model, ids):
    """FlopCounterMode's count per module path, forward only, attention through matmuls."""
    with torch.no_grad(), sdpa_kernel(SDPBackend.MATH), FlopCounterMode(display=False) as counter:
        model(ids)
    return {path.rsplit(".", 1)[-1]: sum(ops.values()) for path, ops in counter.get_flop_counts().items()}


@pytest.mark.parametrize("latent", [None, {"type": "recurrent", "dim": 64, "n_layers": 2}])
@pytest.mark.parametrize("window", [None, 8])
def test_blt_components_against_flop_counter_mode(latent, window):
    torch.manual_seed(0)
    model = bltx.build_model(blt(latent, window)).eval()
    ids = torch.randint(4, 260, (1, T))
    got = executed(model, ids)
    ours = flops_per_byte(model, 4.0, T)  # static stride 4: exactly 4 bytes per patch
    tol = TOLERANCE if window is None else WINDOW_TOLERANCE
    for part in ("encoder", "latent", "decoder"):
        assert ours[part] == pytest.approx(got[part] / T, rel=tol), part
    assert ours["total"] == pytest.approx(got["Global"] / T, rel=tol)


def test_transformer_latent_and_dense_attention_are_exact():
    model = bltx.build_model(blt()).eval()
    got = executed(model, torch.randint(4, 260, (1, T)))
    assert flops_per_byte(model, 4.0, T)["latent"] == got["latent"] / T


@pytest.mark.parametrize("table", [
    {"type": "byte_transformer", "dim": 32, "n_layers": 2, "n_heads": 2},
    {"type": "entropy_lm", "entropy_model": {"type": "transformer", "dim": 32, "n_layers": 2, "n_heads": 2}},
])
def test_byte_level_models_are_exact(table):
    model = bltx.build_model(table).eval()
    got = executed(model, torch.randint(4, 260, (2, T)))
    assert flops_per_byte(model, 1.0, T)["total"] == got["Global"] / (2 * T)


def test_entropy_patcher_counts_its_model_once_frozen():
    patcher = {"type": "entropy", "threshold": 1.0,
               "model": {"type": "transformer", "dim": 32, "n_layers": 1, "n_heads": 2}}
    model = bltx.build_model(blt(patcher=patcher))
    fwd, train = flops_per_byte(model, 4.0, T), flops_per_byte(model, 4.0, T, training=True)
    entropy_lm = bltx.build_model({"type": "entropy_lm", "entropy_model": patcher["model"]})
    assert fwd["patcher"] == flops_per_byte(entropy_lm, 1.0, T)["total"] > 0
    assert train["patcher"] == fwd["patcher"]  # frozen: forward only
    assert train["latent"] == pytest.approx(3 * fwd["latent"])


def test_bpe_baseline_scales_with_bytes_per_token():
    pytest.importorskip("tokenizers")
    bpe = bltx.build_model({"type": "bpe_transformer", "dim": 32, "n_layers": 1, "n_heads": 2, "vocab_size": 300})
    assert flops_per_byte(bpe, 4.0, 64)["total"] < flops_per_byte(bpe, 2.0, 64)["total"]


def test_a_model_without_flop_terms_is_one_line():
    from bltx.errors import ConfigError

    with pytest.raises(ConfigError, match="flop_terms"):
        flops_per_byte(torch.nn.Linear(2, 2), 4.0, T)
