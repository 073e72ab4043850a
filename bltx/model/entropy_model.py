"""Entropy model: a small byte-level causal LM whose next-byte entropies drive patching."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from bltx.bytes import VOCAB_SIZE
from bltx.model.init import init_embedding, init_linear
from bltx.model.norm import RMSNorm
from bltx.model.transformer import TransformerDims, make_layers, rope_for
from bltx.registry import register


def entropy_from_logits(logits: torch.Tensor) -> torch.Tensor:
    """Shannon entropy (nats) of softmax(logits) over the last dim, computed in fp32."""
    logp = torch.log_softmax(logits.float(), dim=-1)
    return -(logp.exp() * logp).sum(-1)


@register("entropy_model", "transformer")
class EntropyTransformer(nn.Module):
    """Byte LM: embedding, windowed causal transformer, norm, head over 260 ids.

    Defaults are the released BLT entropy model's shape. Context: `backend`.
    """

    @dataclass
    class Config(TransformerDims):
        dim: int = 768
        n_layers: int = 14
        n_heads: int = 12
        rope_theta: float = 10000.0
        window: int | None = None  # sliding window (keys incl. itself); None = full causal

        def __post_init__(self):
            super().__post_init__()
            if self.window is not None and self.window < 1:
                raise ValueError(f"window must be >= 1 or unset, got {self.window}")

    def __init__(self, cfg: Config, backend, **context):
        super().__init__()
        self.cfg = cfg
        self.dim = cfg.dim
        self.backend = backend
        self.tok_embeddings = nn.Embedding(VOCAB_SIZE, cfg.dim)
        self.layers = make_layers(cfg)
        self.norm = RMSNorm(cfg.dim, cfg.norm_eps)
        self.output = nn.Linear(cfg.dim, VOCAB_SIZE, bias=False)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        """ids [B, T] -> next-byte logits [B, T, 260]."""
        T = ids.shape[1]
        h = self.tok_embeddings(ids)
        rope = rope_for(self.cfg, T, ids.device)
        mask = self.backend.causal_mask(T, self.cfg.window, ids.device)
        for layer in self.layers.values():
            h = layer(h, mask, rope, self.backend)
        return self.output(self.norm(h))

    def entropies(self, ids: torch.Tensor) -> torch.Tensor:
        """[B, T] fp32: entropy of the prediction made at each position (of byte t+1)."""
        return entropy_from_logits(self(ids))

    def init_weights(self) -> None:
        init_embedding(self.tok_embeddings)
        for layer in self.layers.values():
            layer.init_weights()
        self.norm.init_weights()
        init_linear(self.output)
