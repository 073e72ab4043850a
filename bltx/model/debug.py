"""Tiny debug model tables for tests and smoke runs (seconds on CPU)."""

from __future__ import annotations

import copy

TINY = {
    "type": "blt",
    "attention": "sdpa",
    "patcher": {
        "type": "entropy",
        "threshold": 5.09,
        "model": {"type": "transformer", "dim": 32, "n_layers": 1, "n_heads": 2, "window": 8},
    },
    "byte_embedder": {"type": "hash_ngram", "ngram_sizes": [3, 4], "hash_vocab": 97},
    "encoder": {"type": "local", "dim": 32, "n_layers": 2, "n_heads": 2, "window": 8, "cross_attn_k": 2},
    "latent": {"type": "transformer", "dim": 48, "n_layers": 2, "n_heads": 4, "n_kv_heads": 2, "ffn_dim": 96},
    "decoder": {"type": "local", "dim": 32, "n_layers": 2, "n_heads": 2, "window": 8, "ffn_dim": 64, "cross_attn_k": 2},
}


def tiny_table(**overrides) -> dict:
    """A copy of TINY with top-level keys replaced (component tables replaced whole)."""
    table = copy.deepcopy(TINY)
    table.update(copy.deepcopy(overrides))
    return table
