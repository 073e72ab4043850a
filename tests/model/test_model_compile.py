"""torch.compile(fullgraph=True) of a tiny BLT on CPU, entropy patcher inside the graph.

Inductor on 2 CPU cores is slow (C++ codegen), so the model is the smallest that still
exercises every component: one layer each, one n-gram size, a sliding window and padding
patches (max_patches > real patch counts).
"""

import pytest
import torch

from bltx.model.debug import tiny_table
from bltx.registry import build

SMALLEST = tiny_table(
    max_patches=12,
    patcher={"type": "entropy", "threshold": 5.09,
             "model": {"type": "transformer", "dim": 16, "n_layers": 1, "n_heads": 2, "window": 4}},
    byte_embedder={"type": "hash_ngram", "ngram_sizes": [3], "hash_vocab": 31},
    encoder={"type": "local", "dim": 16, "n_layers": 1, "n_heads": 2, "window": 4},
    latent={"type": "transformer", "dim": 16, "n_layers": 1, "n_heads": 2},
    decoder={"type": "local", "dim": 16, "n_layers": 1, "n_heads": 2, "window": 4},
)


@pytest.mark.filterwarnings("ignore")
def test_compile_fullgraph_matches_eager():
    torch.manual_seed(0)
    model = build("model", SMALLEST, where="model").eval()
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(4, 260, (2, 12), generator=g)
    ids[:, 0] = 1
    ids2 = torch.randint(4, 260, (2, 12), generator=g)
    ids2[:, 0] = 1
    torch._dynamo.reset()
    compiled = torch.compile(model, fullgraph=True, dynamic=False)
    with torch.no_grad():
        out, eager = compiled(ids).logits, model(ids).logits
        # Other bytes -> other patch boundaries, same graph (no recompile on data).
        out2, eager2 = compiled(ids2).logits, model(ids2).logits
    assert not torch.equal(model.patch(ids), model.patch(ids2))
    torch.testing.assert_close(out, eager, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(out2, eager2, rtol=1e-4, atol=1e-4)
