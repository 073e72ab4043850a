"""Local decoder: bytes cross-attend to latent patch states, then a byte transformer and
the next-byte head over the 260 ids.

Each latent state is projected to `cross_attn_k` keys of width dim. Byte t attends only to
the keys of patch `dec_patch_ids[t]` (chosen causally by the BLT assembly); a negative id
means "no complete patch yet" and the cross-attention leaves the byte unchanged.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from bltx.bytes import VOCAB_SIZE
from bltx.model.attention import CrossAttention
from bltx.model.init import init_linear
from bltx.model.local_encoder import patch_query_groups
from bltx.model.norm import RMSNorm
from bltx.model.patch_attention import PatchKeys
from bltx.model.transformer import LocalDims, make_layers, rope_for
from bltx.registry import register


@register("decoder", "local")
class LocalDecoder(nn.Module):
    """forward(h [B,T,dim], latent [B,P,latent_dim], dec_patch_ids [B,T]) -> logits [B,T,260].

    Context: `local_dim` (encoder width; must equal dim since the decoder reads the encoder's
    byte states), `latent_dim`, `backend`.
    """

    @dataclass
    class Config(LocalDims):
        dim: int = 1024
        n_layers: int = 9
        n_heads: int = 16
        cross_attn_all_layers: bool = True

    def __init__(self, cfg: Config, latent_dim: int, backend, local_dim: int | None = None, **context):
        super().__init__()
        from bltx.errors import ConfigError

        if local_dim is not None and local_dim != cfg.dim:
            raise ConfigError(
                f"model.decoder.dim ({cfg.dim}) must equal model.encoder.dim ({local_dim}): "
                f"the decoder reads the encoder's byte states"
            )
        self.cfg = cfg
        self.dim = cfg.dim
        self.backend = backend
        k = cfg.cross_attn_k
        self.patch_proj = nn.Linear(latent_dim, cfg.dim * k, bias=False)
        where = range(cfg.n_layers) if cfg.cross_attn_all_layers else [0]
        self.cross_attn = nn.ModuleDict(
            {str(i): CrossAttention(cfg.dim, cfg.n_heads, cfg.kv_heads, cfg.norm_eps) for i in where}
        )
        self.layers = make_layers(cfg)
        self.norm = RMSNorm(cfg.dim, cfg.norm_eps)
        self.output = nn.Linear(cfg.dim, VOCAB_SIZE, bias=False)

    def forward(self, h: torch.Tensor, latent: torch.Tensor, dec_patch_ids: torch.Tensor) -> torch.Tensor:
        B, T, d = h.shape
        P = latent.shape[1]
        k = self.cfg.cross_attn_k
        kv = self.patch_proj(latent).reshape(B, P * k, d)
        if self.cfg.cross_attn_layout == "patch":
            cross_mask = PatchKeys.build(dec_patch_ids, P, k)
        else:
            cross_mask = self.backend.group_mask(dec_patch_ids, patch_query_groups(B, P, k, h.device))
        rope = rope_for(self.cfg, T, h.device)
        self_mask = self.backend.causal_mask(T, self.cfg.window, h.device)
        for name, layer in self.layers.items():
            if name in self.cross_attn:
                h = h + self.cross_attn[name](h, kv, cross_mask, self.backend)
            h = layer(h, self_mask, rope, self.backend)
        return self.output(self.norm(h))

    def init_weights(self) -> None:
        init_linear(self.patch_proj)
        for ca in self.cross_attn.values():
            ca.init_weights()
        for layer in self.layers.values():
            layer.init_weights()
        self.norm.init_weights()
        init_linear(self.output)
