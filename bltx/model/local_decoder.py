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
from bltx.model import flop_math
from bltx.model.attention import CrossAttention, causal_mask
from bltx.model.cache import prefill_stack, StackCache
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

    def forward(self, h: torch.Tensor, latent: torch.Tensor, dec_patch_ids: torch.Tensor,
                doc_ids: torch.Tensor | None = None) -> torch.Tensor:
        """`doc_ids` [B, T]: bytes attend only inside their document (the assembly has set
        the patch ids of bytes whose patch lies in another document to -1: none read)."""
        return self.output(self.hidden(h, latent, dec_patch_ids, doc_ids))

    def hidden(self, h: torch.Tensor, latent: torch.Tensor, dec_patch_ids: torch.Tensor,
               doc_ids: torch.Tensor | None = None) -> torch.Tensor:
        """The normalised byte states the head reads [B, T, dim] (models with heads of
        their own read them: bltx/interop/byteify/)."""
        B, T, d = h.shape
        P = latent.shape[1]
        k = self.cfg.cross_attn_k
        kv = self.patch_proj(latent).reshape(B, P * k, d)
        if self.cfg.cross_attn_layout == "patch":
            cross_mask = PatchKeys.build(dec_patch_ids, P, k)
        else:
            cross_mask = self.backend.group_mask(dec_patch_ids, patch_query_groups(B, P, k, h.device))
        rope = rope_for(self.cfg, T, h.device)
        self_mask = causal_mask(self.backend, T, self.cfg.window, h.device, doc_ids)
        for name, layer in self.layers.items():
            if name in self.cross_attn:
                h = h + self.cross_attn[name](h, kv, cross_mask, self.backend)
            h = layer(h, self_mask, rope, self.backend)
        return self.norm(h)

    # -- cached generation (bltx/model/cache.py) ----------------------------------------------
    # Every byte reads the newest complete patch (lookahead rule, bltx/model/blt.py), so the
    # cache keeps that patch's keys/values per cross-attention layer, computed once per patch.

    def init_cache(self, batch: int, capacity: int) -> dict:
        like = self.output.weight
        k, hd = self.cfg.cross_attn_k, self.cfg.head_dim
        shape = (batch, self.cfg.kv_heads, k, hd)
        patch = {name: (torch.zeros(shape, dtype=like.dtype, device=like.device),
                        torch.zeros(shape, dtype=like.dtype, device=like.device)) for name in self.cross_attn}
        return {"stack": StackCache(len(self.layers), self.cfg, batch, capacity, self.cfg.window, like),
                "patch": patch, "valid": torch.zeros(batch, dtype=torch.bool, device=like.device)}

    def prefill(self, h, latent, dec_patch_ids, lengths: torch.Tensor, cache: dict) -> torch.Tensor:
        return self.output(self.prefill_hidden(h, latent, dec_patch_ids, lengths, cache))

    def prefill_hidden(self, h, latent, dec_patch_ids, lengths: torch.Tensor, cache: dict) -> torch.Tensor:
        return prefill_stack(self.layers, cache["stack"], lengths, lambda: self.hidden(h, latent, dec_patch_ids))

    def set_patch(self, latent_state: torch.Tensor, active: torch.Tensor, cache: dict) -> None:
        """Rows `active` now read the patch whose latent output is latent_state [B, 1, latent_dim]."""
        B = latent_state.shape[0]
        kv = self.patch_proj(latent_state).reshape(B, self.cfg.cross_attn_k, self.cfg.dim)
        keep = active[:, None, None, None]
        for name, (k_old, v_old) in cache["patch"].items():
            k, v = self.cross_attn[name].project_kv(kv)
            k_old.copy_(torch.where(keep, k, k_old))
            v_old.copy_(torch.where(keep, v, v_old))
        cache["valid"].logical_or_(active)

    def step(self, h: torch.Tensor, cache: dict) -> torch.Tensor:
        """T bytes per row, all reading the current patch, h [B, T, dim] (the encoder's
        states) -> logits [B, T, 260]."""
        return self.output(self.step_hidden(h, cache))

    def step_hidden(self, h: torch.Tensor, cache: dict) -> torch.Tensor:
        """`step`'s normalised byte states [B, T, dim], before the head."""
        stack = cache["stack"]
        info = stack.prepare(count=h.shape[1])
        for i, (name, layer) in enumerate(self.layers.items()):
            if name in self.cross_attn:
                k, v = cache["patch"][name]
                h = h + self.cross_attn[name].step(h, k, v, cache["valid"])
            h = layer.step(h, stack.layers[i], info)
        stack.advance(count=h.shape[1])
        return self.norm(h)

    def init_weights(self) -> None:
        init_linear(self.patch_proj)
        for ca in self.cross_attn.values():
            ca.init_weights()
        for layer in self.layers.values():
            layer.init_weights()
        self.norm.init_weights()
        init_linear(self.output)

    def forward_flops(self, seq_len: int, patch_len: float) -> float:
        """Forward FLOPs per byte: byte layers and head, each byte's cross-attention over the
        k slots of its patch, and each patch's key/value projections spread over its bytes."""
        cfg, k = self.cfg, self.cfg.cross_attn_k
        n_cross = len(self.cross_attn)
        q_side, kv_side = flop_math.cross_projections(cfg)
        per_byte = flop_math.stack(cfg, flop_math.context(cfg.window, seq_len))
        per_byte += n_cross * (q_side + flop_math.attention(cfg, k)) + 2.0 * cfg.dim * VOCAB_SIZE
        per_patch = n_cross * kv_side * k + 2.0 * self.patch_proj.in_features * cfg.dim * k
        return per_byte + per_patch / patch_len
