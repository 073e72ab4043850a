"""Pre-norm transformer block and the shared size fields of every transformer component."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
from torch import nn

from bltx.checks import at_least, require
from bltx.model.attention import SelfAttention, causal_mask
from bltx.model.mlp import FeedForward, default_ffn_dim
from bltx.model.norm import RMSNorm
from bltx.model.rope import rope_cos_sin


@dataclass
class TransformerDims:
    """Sizes shared by the byte/patch transformers (encoder, latent, decoder, entropy model).

    n_kv_heads None -> n_heads (no GQA); ffn_dim None -> int(8 * dim / 3).
    """

    dim: int = 1024
    n_layers: int = 1
    n_heads: int = 16
    n_kv_heads: int | None = None
    ffn_dim: int | None = None
    norm_eps: float = 1e-5
    rope_theta: float = 500000.0
    # Biases on the q/k/v projections (Qwen2-style blocks; a latent from such a source).
    qkv_bias: bool = False

    def __post_init__(self):
        for name in ("dim", "n_layers", "n_heads"):
            at_least(name, getattr(self, name), 1)
        require(self.dim % self.n_heads == 0, "dim", self.dim, f"must be divisible by n_heads ({self.n_heads})")
        require(self.n_kv_heads is None or (self.n_kv_heads >= 1 and self.n_heads % self.n_kv_heads == 0),
                "n_kv_heads", self.n_kv_heads, f"must be >= 1 and divide n_heads ({self.n_heads})")
        require((self.dim // self.n_heads) % 2 == 0, "dim", self.dim,
                f"dim / n_heads = {self.dim // self.n_heads} must be even for RoPE")

    @property
    def kv_heads(self) -> int:
        return self.n_kv_heads or self.n_heads

    @property
    def hidden_dim(self) -> int:
        return self.ffn_dim or default_ffn_dim(self.dim)

    @property
    def head_dim(self) -> int:
        return self.dim // self.n_heads


@dataclass
class LocalDims(TransformerDims):
    """Sizes of a local (byte-level) model: a transformer plus patch cross-attention."""

    window: int | None = None  # sliding window (keys incl. itself); None = full causal
    cross_attn_k: int = 2  # queries (encoder) / keys (decoder) per patch
    # "patch": each cross-attention query reads only its own patch (cost bytes x k,
    # bltx/model/patch_attention.py); "dense": the backend's group mask over all bytes x
    # patch slots, the reference the patch layout is tested against.
    cross_attn_layout: Literal["patch", "dense"] = "patch"

    def __post_init__(self):
        super().__post_init__()
        at_least("cross_attn_k", self.cross_attn_k, 1)
        if self.window is not None:
            at_least("window", self.window, 1, " (or unset: full causal)")


class Block(nn.Module):
    """x + attn(norm(x)); then x + ffn(norm(x))."""

    def __init__(self, dims: TransformerDims):
        super().__init__()
        self.attention_norm = RMSNorm(dims.dim, dims.norm_eps)
        self.attention = SelfAttention(dims.dim, dims.n_heads, dims.kv_heads, qkv_bias=dims.qkv_bias)
        self.ffn_norm = RMSNorm(dims.dim, dims.norm_eps)
        self.feed_forward = FeedForward(dims.dim, dims.hidden_dim)

    def forward(self, x, mask, rope, backend) -> torch.Tensor:
        x = x + self.attention(self.attention_norm(x), mask, rope, backend)
        return x + self.feed_forward(self.ffn_norm(x))

    def step(self, x, kv, info) -> torch.Tensor:
        """One new position per row against the layer's KVCache (bltx/model/cache.py)."""
        x = x + self.attention.step(self.attention_norm(x), kv, info)
        return x + self.feed_forward(self.ffn_norm(x))

    def init_weights(self) -> None:
        self.attention_norm.init_weights()
        self.attention.init_weights()
        self.ffn_norm.init_weights()
        self.feed_forward.init_weights()


def make_layers(dims: TransformerDims) -> nn.ModuleDict:
    # ModuleDict keyed "0", "1", ...: parameter names stay stable when layers are wrapped
    # or pruned (torchtitan convention).
    return nn.ModuleDict({str(i): Block(dims) for i in range(dims.n_layers)})


def rope_for(dims: TransformerDims, length: int, device) -> tuple[torch.Tensor, torch.Tensor]:
    return rope_cos_sin(length, dims.head_dim, dims.rope_theta, device)


def run_layers(layers: nn.ModuleDict, x: torch.Tensor, dims: TransformerDims, window: int | None,
               backend, doc: torch.Tensor | None = None) -> torch.Tensor:
    """x [B, T, dim] through a causal stack (sliding `window`, or full when None): one rope
    table and one mask shared by every layer. The forward of every plain stack. `doc`
    [B, T]: positions attend only inside their document (RoPE is relative, so positions need
    no reset at a document's start)."""
    T = x.shape[1]
    rope = rope_for(dims, T, x.device)
    mask = causal_mask(backend, T, window, x.device, doc)
    for layer in layers.values():
        x = layer(x, mask, rope, backend)
    return x


def step_layers(layers: nn.ModuleDict, x: torch.Tensor, cache, active: torch.Tensor | None = None,
                bound: int | None = None) -> torch.Tensor:
    """x [B, T, dim] through every block of `layers` with their StackCache; rows advance by
    T (all, or those `active`); `bound`: keys read per row (StackCache.prepare)."""
    info = cache.prepare(bound, x.shape[1])
    for i, layer in enumerate(layers.values()):
        x = layer.step(x, cache.layers[i], info)
    cache.advance(active, x.shape[1])
    return x
