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
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from bltx.model import flop_math
from bltx.model.chunking import chunk_start_positions, gather_rows
from bltx.model.init import init_linear
from bltx.model.transformer import LocalDims, make_layers, run_layers
from bltx.registry import register


@register("encoder", "byte_layers")
class ByteLayersEncoder(nn.Module):
    """Byte transformer + first-byte downsampling. Context: `latent_dim`, `backend`."""

    @dataclass
    class Config(LocalDims):
        dim: int = 1024
        n_layers: int = 1
        n_heads: int = 16

    def __init__(self, cfg: Config, latent_dim: int, backend, **context):
        super().__init__()
        self.cfg = cfg
        self.dim = cfg.dim
        self.latent_dim = latent_dim
        self.backend = backend
        self.layers = make_layers(cfg)
        self.out_proj = nn.Linear(cfg.dim, latent_dim, bias=False) if cfg.dim != latent_dim else None

    def encode_bytes(self, h: torch.Tensor) -> torch.Tensor:
        return run_layers(self.layers, h, self.cfg, self.cfg.window, self.backend)

    def downsample(self, h: torch.Tensor, patch_ids: torch.Tensor, num_patches: int) -> torch.Tensor:
        chunks = gather_rows(h, chunk_start_positions(patch_ids, num_patches))
        return chunks if self.out_proj is None else self.out_proj(chunks)

    def forward(self, h: torch.Tensor, patch_ids: torch.Tensor, num_patches: int):
        h = self.encode_bytes(h)
        return h, self.downsample(h, patch_ids, num_patches)

    def init_weights(self) -> None:
        for layer in self.layers.values():
            layer.init_weights()
        if self.out_proj is not None:
            init_linear(self.out_proj)

    def forward_flops(self, seq_len: int, patch_len: float) -> float:
        """Forward FLOPs per byte: the byte layers, and the projection of each chunk."""
        per_byte = flop_math.stack(self.cfg, flop_math.context(self.cfg.window, seq_len))
        per_chunk = 0.0 if self.out_proj is None else 2.0 * self.cfg.dim * self.latent_dim
        return per_byte + per_chunk / patch_len
