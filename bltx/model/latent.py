"""Latent backbone: a causal transformer over patch states (Llama-style, GQA).

Interface every latent must offer (so the BLT assembly can swap it by name):
    module.dim                 width of its input and output
    module(x [B, P, dim]) -> [B, P, dim]   causal over P
It is built with context `backend` (attention backend); accept **context to ignore it.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from bltx.model import flop_math
from bltx.model.cache import StackCache, prefill_stack
from bltx.model.init import init_children
from bltx.model.norm import RMSNorm
from bltx.model.transformer import TransformerDims, make_layers, run_layers, step_layers
from bltx.registry import register


@register("latent", "transformer")
class LatentTransformer(nn.Module):
    """Causal transformer over patches. HF's global transformer has no final norm (the
    decoder normalises later); `final_norm = true` adds one."""

    @dataclass
    class Config(TransformerDims):
        dim: int = 2048
        n_layers: int = 25
        n_heads: int = 16
        final_norm: bool = False

    def __init__(self, cfg: Config, backend, **context):
        super().__init__()
        self.cfg = cfg
        self.dim = cfg.dim
        self.backend = backend
        self.layers = make_layers(cfg)
        self.norm = RMSNorm(cfg.dim, cfg.norm_eps) if cfg.final_norm else None

    def forward(self, x: torch.Tensor, doc_ids: torch.Tensor | None = None) -> torch.Tensor:
        """`doc_ids` [B, P]: each patch's document; patches attend only inside theirs."""
        x = run_layers(self.layers, x, self.cfg, None, self.backend, doc_ids)
        return self.norm(x) if self.norm is not None else x

    # -- cached generation (bltx/model/cache.py): one position per closed patch ----------------

    def init_cache(self, batch: int, capacity: int) -> StackCache:
        like = self.layers["0"].attention.wq.weight
        return StackCache(len(self.layers), self.cfg, batch, capacity, None, like)

    def prefill(self, x: torch.Tensor, counts: torch.Tensor, cache: StackCache) -> torch.Tensor:
        """x [B, P, dim] -> [B, P, dim]; row b's cache keeps its first counts[b] patches."""
        return prefill_stack(self.layers, cache, counts, lambda: self(x))

    def step(self, x: torch.Tensor, cache: StackCache, active: torch.Tensor, bound: int | None = None) -> torch.Tensor:
        """One patch per row, x [B, 1, dim]; only `active` rows advance (the others' writes
        land past their last patch and are overwritten when they close one). `bound` > every
        row's patch count: attention reads that many slots instead of the whole capacity."""
        x = step_layers(self.layers, x, cache, active, bound)
        return self.norm(x) if self.norm is not None else x

    def init_weights(self) -> None:
        init_children(self)  # every layer, then the final norm

    def forward_flops(self, seq_len: int, patch_len: float) -> float:
        """Forward FLOPs per patch; each patch attends to the sequence's seq_len / patch_len."""
        return flop_math.stack(self.cfg, max(seq_len / patch_len, 1.0))
