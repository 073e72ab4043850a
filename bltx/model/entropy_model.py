"""Entropy model: a small byte-level causal LM whose next-byte entropies drive patching."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from bltx.checks import at_least
from bltx.bytes import VOCAB_SIZE
from bltx.model.causal_lm import CausalLM
from bltx.model.transformer import TransformerDims
from bltx.registry import register


def entropy_from_logits(logits: torch.Tensor) -> torch.Tensor:
    """Shannon entropy (nats) of softmax(logits) over the last dim, computed in fp32."""
    logp = torch.log_softmax(logits.float(), dim=-1)
    return -(logp.exp() * logp).sum(-1)


@register("entropy_model", "transformer")
class EntropyTransformer(CausalLM):
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
            if self.window is not None:
                at_least("window", self.window, 1, " (or unset: full causal)")

    def __init__(self, cfg: Config, backend, **context):
        super().__init__(cfg, VOCAB_SIZE, backend, window=cfg.window)
        self.cfg = cfg
        self.dim = cfg.dim

    def entropies(self, ids: torch.Tensor) -> torch.Tensor:
        """[B, T] fp32: entropy of the prediction made at each position (of byte t+1)."""
        return entropy_from_logits(self(ids))
