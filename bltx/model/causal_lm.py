"""A plain causal transformer language model: embedding -> blocks -> norm -> head.

Shared by the entropy model (a byte LM whose entropies drive patching) and the baselines
(byte-level and BPE-token transformers). Parameter names (tok_embeddings, layers, norm,
output) follow torchtitan and the released BLT entropy model, so weights convert as is.
"""

from __future__ import annotations

import torch
from torch import nn

from bltx.model import flop_math
from bltx.model.cache import StackCache, prefill_stack
from bltx.model.init import init_embedding, init_linear
from bltx.model.norm import RMSNorm
from bltx.model.transformer import TransformerDims, make_layers, run_layers, step_layers


class CausalLM(nn.Module):
    """Embedding -> causal (optionally windowed) transformer -> norm -> head over `vocab` ids."""

    def __init__(self, dims: TransformerDims, vocab: int, backend, window: int | None = None):
        super().__init__()
        self.dims = dims
        self.window = window
        self.backend = backend
        self.tok_embeddings = nn.Embedding(vocab, dims.dim)
        self.layers = make_layers(dims)
        self.norm = RMSNorm(dims.dim, dims.norm_eps)
        self.output = nn.Linear(dims.dim, vocab, bias=False)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        """tokens [B, T] -> next-token logits [B, T, vocab]."""
        h = run_layers(self.layers, self.tok_embeddings(tokens), self.dims, self.window, self.backend)
        return self.output(self.norm(h))

    # -- cached generation (bltx/model/cache.py) ----------------------------------------------

    def init_cache(self, batch: int, capacity: int) -> StackCache:
        return StackCache(len(self.layers), self.dims, batch, capacity, self.window, self.output.weight)

    def prefill(self, tokens: torch.Tensor, lengths: torch.Tensor, cache: StackCache) -> torch.Tensor:
        """Right-padded tokens [B, T] -> logits [B, T, vocab]; the cache ends at `lengths`."""
        return prefill_stack(self.layers, cache, lengths, lambda: self(tokens))

    def step(self, tokens: torch.Tensor, cache: StackCache) -> torch.Tensor:
        """tokens [B, 1] at each row's next position -> logits [B, 1, vocab]."""
        h = step_layers(self.layers, self.tok_embeddings(tokens), cache)
        return self.output(self.norm(h))

    def init_weights(self) -> None:
        init_embedding(self.tok_embeddings)
        for layer in self.layers.values():
            layer.init_weights()
        self.norm.init_weights()
        init_linear(self.output)

    def flops_per_token(self, context: float) -> float:
        """Forward FLOPs per token (bltx/model/flop_math.py) with `context` tokens in the
        sequence: the blocks (attention capped by the window) and the head."""
        ctx = flop_math.context(self.window, context)
        return flop_math.stack(self.dims, ctx) + 2.0 * self.dims.dim * self.output.out_features

    def forward_flops(self, seq_len: int, patch_len: float) -> float:
        """Forward FLOPs per token of a `seq_len`-token sequence (patching plays no part)."""
        return self.flops_per_token(seq_len)
