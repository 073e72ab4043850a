"""Key/value caches and one-position attention steps for incremental generation.

Byte-level caches (entropy model, local encoder, local decoder) advance in lockstep: every row
of the batch is at the same byte position, so they append at one shared index. The latent
cache holds patches, and rows close patches at different bytes, so it writes at a per-row
index. Both are the same class; `write` takes the index per row.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from bltx.model.rope import apply_rope, rope_cos_sin
from bltx.model.transformer import Block


class KVCache:
    """k, v [B, H_kv, capacity, head_dim] for one attention layer."""

    def __init__(self, batch: int, n_kv_heads: int, head_dim: int, capacity: int, like: torch.Tensor):
        shape = (batch, n_kv_heads, capacity, head_dim)
        self.k = torch.zeros(shape, dtype=like.dtype, device=like.device)
        self.v = torch.zeros(shape, dtype=like.dtype, device=like.device)

    def write(self, index: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> None:
        """Store k/v [B, H, 1, D] at position index[b] of each row b."""
        rows = torch.arange(k.shape[0], device=k.device)
        self.k[rows, :, index] = k[:, :, 0]
        self.v[rows, :, index] = v[:, :, 0]


def key_mask(positions: torch.Tensor, capacity: int, window: int | None) -> torch.Tensor:
    """[B, 1, 1, capacity] bool: the keys row b's query at positions[b] may see."""
    keys = torch.arange(capacity, device=positions.device)
    visible = keys[None, :] <= positions[:, None]
    if window is not None:
        visible &= keys[None, :] > positions[:, None] - window
    return visible[:, None, None, :]


def block_step(
    block: Block,
    x: torch.Tensor,
    cache: KVCache,
    positions: torch.Tensor,
    rope: tuple[torch.Tensor, torch.Tensor],
    mask: torch.Tensor,
) -> torch.Tensor:
    """One new position through a pre-norm transformer block, reading and filling `cache`.

    Same arithmetic as `Block.forward` restricted to the last query; x [B, 1, dim]."""
    attn = block.attention
    B = x.shape[0]
    xn = block.attention_norm(x)
    q = attn.wq(xn).view(B, 1, attn.n_heads, attn.head_dim).transpose(1, 2)
    k = attn.wk(xn).view(B, 1, attn.n_kv_heads, attn.head_dim).transpose(1, 2)
    v = attn.wv(xn).view(B, 1, attn.n_kv_heads, attn.head_dim).transpose(1, 2)
    cos, sin = rope
    q, k = apply_rope(q, cos, sin), apply_rope(k, cos, sin)
    cache.write(positions, k, v)
    out = F.scaled_dot_product_attention(
        q, cache.k, cache.v, attn_mask=mask, enable_gqa=attn.n_heads != attn.n_kv_heads
    )
    x = x + attn.wo(out.transpose(1, 2).reshape(B, 1, -1))
    return x + block.feed_forward(block.ffn_norm(x))


class CachedStack:
    """A stack of `Block`s (an nn.ModuleDict of them) stepped one position at a time."""

    def __init__(self, layers, dims, batch: int, capacity: int, like: torch.Tensor, window: int | None = None):
        self.layers = list(layers.values())
        self.dims = dims
        self.window = window
        self.capacity = capacity
        self.caches = [KVCache(batch, dims.kv_heads, dims.head_dim, capacity, like) for _ in self.layers]
        # The same table a full forward of `capacity` positions would build, so each cached
        # position gets bit-identical rotations.
        self.cos, self.sin = rope_cos_sin(capacity, dims.head_dim, dims.rope_theta, like.device)

    def prepare(self, positions: torch.Tensor):
        """Rotations and key mask for one query per row at `positions` [B]."""
        # [B, 1, 1, head_dim]: one position per row, broadcast over heads.
        rope = (self.cos[positions][:, None, None], self.sin[positions][:, None, None])
        return positions, rope, key_mask(positions, self.capacity, self.window)

    def step_layer(self, i: int, x: torch.Tensor, prepared) -> torch.Tensor:
        positions, rope, mask = prepared
        return block_step(self.layers[i], x, self.caches[i], positions, rope, mask)

    def step(self, x: torch.Tensor, positions: torch.Tensor, keep: tuple[int, ...] = ()):
        """x [B, 1, dim] at per-row `positions` -> (output, {layer index: its output} for
        the indices in `keep`, which cross-attention reads)."""
        prepared = self.prepare(positions)
        kept = {}
        for i in range(len(self.layers)):
            x = self.step_layer(i, x, prepared)
            if i in keep:
                kept[i] = x
        return x, kept
