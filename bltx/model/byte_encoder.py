"""`byte_layers` encoder: the local encoder's byte transformer with H-Net's downsampler
(each chunk is the byte state at its first byte) instead of patch cross-attention.

Why not the local encoder's cross-attention for learned chunking: its patch queries pool over
all bytes of a patch, so a patch's vector depends on its last byte, and a byte may then only
read patches that ended before it. Represented by its first byte, a chunk depends on bytes up
to its start only, so every byte can read the chunk it belongs to (H-Net's dechunker), and the
router can read the same byte states the chunks are made of.

Two stages, so a chunker can sit between them (bltx/model/learned_blt.py):
    h = encoder.encode_bytes(h)                       # [B, T, dim], causal
    chunks = encoder.downsample(h, patch_ids, P)      # [B, P, latent_dim]
`forward(h, patch_ids, P)` runs both and fulfils the Encoder contract, so the encoder also
fits a BLT with any patcher.

Cached generation (bltx/model/cache.py) steps the byte layers only (`prefill_bytes`, `step`);
a chunk is `to_chunk` of its opening byte state, so it needs no cache of its own. There is no
`close` yet (BLT's patch-closing step; it would need each open patch's first byte state): a
BLT that pairs this encoder with a patcher generates by recomputation.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from bltx.model import flop_math
from bltx.model.cache import StackCache, prefill_stack
from bltx.model.chunking import chunk_start_positions, gather_rows
from bltx.model.init import init_linear
from bltx.model.local_encoder import ByteStackEncoder
from bltx.model.transformer import LocalDims, run_layers, step_layers
from bltx.registry import register


@register("encoder", "byte_layers")
class ByteLayersEncoder(ByteStackEncoder):
    """Byte transformer + first-byte downsampling. Context: `latent_dim`, `backend`."""

    @dataclass
    class Config(LocalDims):
        dim: int = 1024
        n_layers: int = 1
        n_heads: int = 16

    def __init__(self, cfg: Config, latent_dim: int, backend, **context):
        super().__init__(cfg, latent_dim, backend)
        self.out_proj = nn.Linear(cfg.dim, latent_dim, bias=False) if cfg.dim != latent_dim else None

    def encode_bytes(self, h: torch.Tensor) -> torch.Tensor:
        return run_layers(self.layers, h, self.cfg, self.cfg.window, self.backend)

    def downsample(self, h: torch.Tensor, patch_ids: torch.Tensor, num_patches: int) -> torch.Tensor:
        return self.to_chunk(gather_rows(h, chunk_start_positions(patch_ids, num_patches)))

    def to_chunk(self, states: torch.Tensor) -> torch.Tensor:
        """Chunk-opening byte states [..., dim] -> the latent's input [..., latent dim]."""
        return states if self.out_proj is None else self.out_proj(states)

    def forward(self, h: torch.Tensor, patch_ids: torch.Tensor, num_patches: int):
        h = self.encode_bytes(h)
        return h, self.downsample(h, patch_ids, num_patches)

    def init_weights(self) -> None:
        for layer in self.layers.values():
            layer.init_weights()
        if self.out_proj is not None:
            init_linear(self.out_proj)

    # -- cached generation (bltx/model/cache.py) ----------------------------------------------

    def init_cache(self, batch: int, capacity: int) -> StackCache:
        return self.stack_cache(batch, capacity)

    def prefill_bytes(self, h: torch.Tensor, lengths: torch.Tensor, cache: StackCache) -> torch.Tensor:
        """`encode_bytes` over right-padded prompts, filling the byte layers' cache."""
        return prefill_stack(self.layers, cache, lengths, lambda: self.encode_bytes(h))

    def prefill(self, h, patch_ids, num_patches: int, lengths: torch.Tensor, cache: StackCache):
        h = self.prefill_bytes(h, lengths, cache)
        return h, self.downsample(h, patch_ids, num_patches)

    def step(self, h: torch.Tensor, cache: StackCache) -> torch.Tensor:
        """T new bytes per row, h [B, T, dim] -> their byte states [B, T, dim]."""
        return step_layers(self.layers, h, cache)

    def forward_flops(self, seq_len: int, patch_len: float) -> float:
        """Forward FLOPs per byte: the byte layers, and the projection of each chunk."""
        per_byte = flop_math.stack(self.cfg, flop_math.context(self.cfg.window, seq_len))
        per_chunk = 0.0 if self.out_proj is None else 2.0 * self.cfg.dim * self.latent_dim
        return per_byte + per_chunk / patch_len
