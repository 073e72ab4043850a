"""Attention backends and the self-/cross-attention layers that use them.

A backend turns a mask *description* into whatever its kernel wants, once per forward, and
then runs attention with it in every layer:

    mask = backend.causal_mask(T, window, device)        # self-attention over bytes/patches
    mask = causal_mask(backend, T, window, device, doc)  # ... inside documents (doc [B, T])
    mask = backend.group_mask(q_group, kv_group)          # q may see kv iff same group id
    out  = run_attention(backend, q, k, v, mask)          # q [B,H,Lq,D], k/v [B,Hkv,Lkv,D]

Group masks express both BLT cross-attentions: patch queries see the bytes of their patch
(encoder) and bytes see the latent state of one patch (decoder). A query whose group id is
negative or matches no key (padding patches, bytes before the first complete patch) gets a
zero output instead of NaN, so it leaves the residual stream untouched.

`sdpa` materialises boolean masks (CPU and GPU, forward and backward); a sliding window
runs blocked (bltx/model/window_attention.py: cost T x window, not T x T). `flex` builds
FlexAttention block masks (CUDA; use `sdpa` for CPU training, FlexAttention has no CPU
backward). Both are registered under the "attention" kind so plugins can add others.

A mask object with its own `attend(q, k, v, scale)` runs itself whatever the backend: the
blocked window and the patch-local cross-attention layouts (bltx/model/patch_attention.py)
are plain torch ops that work on every device.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from bltx.model.init import init_linear
from bltx.model.norm import RMSNorm
from bltx.model.rope import apply_rope
from bltx.model.window_attention import RunsItself, blocked_window_mask, use_blocked, window_mask
from bltx.registry import build, get_registry, register


@dataclass
class SdpaMask:
    """Boolean mask for F.scaled_dot_product_attention (None with is_causal=True is the
    fast causal path); `row_valid` [B,1,Lq,1] zeroes queries that may see no key."""

    mask: torch.Tensor | None
    is_causal: bool = False
    row_valid: torch.Tensor | None = None


@register("attention", "sdpa")
class SdpaBackend:
    """torch scaled_dot_product_attention with explicit boolean masks."""

    @dataclass
    class Config:
        pass

    def __init__(self, cfg: Config | None = None):
        pass

    def causal_mask(self, length: int, window: int | None, device, doc: torch.Tensor | None = None):
        """`doc` [B, length] (optional): keys of another document are hidden too."""
        if doc is None and (window is None or window >= length):
            return SdpaMask(None, is_causal=True)
        # Query i sees keys j with i - window < j <= i (window keys including itself).
        if window is not None and window < length and use_blocked(length, window):
            return blocked_window_mask(length, window, device, doc)
        mask = window_mask(length, length if window is None else window, device)
        if doc is None:
            return SdpaMask(mask)
        # Every query sees itself, so no row is empty.
        return SdpaMask((mask & (doc[:, :, None] == doc[:, None, :]))[:, None])

    def group_mask(self, q_group: torch.Tensor, kv_group: torch.Tensor) -> SdpaMask:
        allowed = (q_group[:, :, None] == kv_group[:, None, :]) & (q_group[:, :, None] >= 0)
        has_key = allowed.any(dim=-1, keepdim=True)
        # Rows with no key would softmax over nothing (NaN); let them see everything and
        # zero their output afterwards.
        allowed = allowed | ~has_key
        return SdpaMask(allowed[:, None], row_valid=has_key[:, None])

    def attend(self, q, k, v, mask: SdpaMask, scale: float | None = None) -> torch.Tensor:
        gqa = q.shape[1] != k.shape[1]
        out = F.scaled_dot_product_attention(
            q, k, v, attn_mask=mask.mask, is_causal=mask.is_causal, scale=scale, enable_gqa=gqa
        )
        if mask.row_valid is not None:
            out = out * mask.row_valid.to(out.dtype)
        return out


@dataclass
class FlexMask:
    block_mask: Any
    row_valid: torch.Tensor | None = None


@register("attention", "flex")
class FlexBackend:
    """FlexAttention with block masks built from the same mask descriptions (CUDA)."""

    @dataclass
    class Config:
        pass

    def __init__(self, cfg: Config | None = None):
        pass

    def causal_mask(self, length: int, window: int | None, device, doc: torch.Tensor | None = None) -> FlexMask:
        from torch.nn.attention.flex_attention import create_block_mask

        if window is None:
            def causal(b, h, q, kv):
                return kv <= q
        else:
            def causal(b, h, q, kv):
                return (kv <= q) & (q - kv < window)

        if doc is None:
            return FlexMask(create_block_mask(causal, None, None, length, length, device=device))

        def mask_mod(b, h, q, kv):
            return causal(b, h, q, kv) & (doc[b, q] == doc[b, kv])

        return FlexMask(create_block_mask(mask_mod, doc.shape[0], None, length, length, device=device))

    def group_mask(self, q_group: torch.Tensor, kv_group: torch.Tensor) -> FlexMask:
        from torch.nn.attention.flex_attention import create_block_mask

        def mask_mod(b, h, q, kv):
            g = q_group[b, q]
            return (g == kv_group[b, kv]) & (g >= 0)

        B, Lq = q_group.shape
        has_key = ((q_group[:, :, None] == kv_group[:, None, :]) & (q_group[:, :, None] >= 0)).any(-1)
        bm = create_block_mask(mask_mod, B, None, Lq, kv_group.shape[1], device=q_group.device)
        return FlexMask(bm, row_valid=has_key[:, None, :, None])

    def attend(self, q, k, v, mask: FlexMask, scale: float | None = None) -> torch.Tensor:
        from torch.nn.attention.flex_attention import flex_attention

        gqa = q.shape[1] != k.shape[1]
        out = flex_attention(q, k, v, block_mask=mask.block_mask, scale=scale, enable_gqa=gqa)
        if mask.row_valid is not None:
            out = out * mask.row_valid.to(out.dtype)
        return out


# Generation steps build explicit boolean masks, whatever backend the model trains with.
SDPA = SdpaBackend()


def causal_mask(backend, length: int, window: int | None, device, doc: torch.Tensor | None = None):
    """The backend's causal mask, inside documents when `doc` [B, length] is given (asked
    only then, so a plugin backend without document masks serves plain data unchanged)."""
    if doc is None:
        return backend.causal_mask(length, window, device)
    return backend.causal_mask(length, window, device, doc=doc)


def run_attention(backend, q, k, v, mask, scale: float | None = None) -> torch.Tensor:
    """Attention with `mask`: a mask that `RunsItself` computes its own attention, any other
    goes to the backend that made it."""
    if isinstance(mask, RunsItself):
        return mask.attend(q, k, v, scale)
    return backend.attend(q, k, v, mask, scale)


def attention_backend(name: str, where: str = "attention"):
    """Build a registered backend by name (ConfigError naming the registered ones)."""
    return build("attention", {"type": name}, where=where)


def check_backend_name(name: str) -> None:
    """For Config.__post_init__: ValueError (-> one-line ConfigError) on an unknown backend."""
    reg = get_registry("attention")
    if name not in reg:
        raise ValueError(f"unknown attention backend '{name}'; registered: {', '.join(reg.names())}")


class SelfAttention(nn.Module):
    """Multi-head (GQA) self-attention with interleaved RoPE; mask from the caller."""

    def __init__(self, dim: int, n_heads: int, n_kv_heads: int, qkv_bias: bool = False):
        super().__init__()
        self.n_heads = n_heads
        self.n_kv_heads = n_kv_heads
        self.head_dim = dim // n_heads
        self.wq = nn.Linear(dim, n_heads * self.head_dim, bias=qkv_bias)
        self.wk = nn.Linear(dim, n_kv_heads * self.head_dim, bias=qkv_bias)
        self.wv = nn.Linear(dim, n_kv_heads * self.head_dim, bias=qkv_bias)
        self.wo = nn.Linear(n_heads * self.head_dim, dim, bias=False)

    def forward(self, x, mask, rope, backend) -> torch.Tensor:
        B, T, _ = x.shape
        q = self.wq(x).view(B, T, self.n_heads, self.head_dim).transpose(1, 2)
        k = self.wk(x).view(B, T, self.n_kv_heads, self.head_dim).transpose(1, 2)
        v = self.wv(x).view(B, T, self.n_kv_heads, self.head_dim).transpose(1, 2)
        cos, sin = rope
        q, k = apply_rope(q, cos, sin), apply_rope(k, cos, sin)
        out = run_attention(backend, q, k, v, mask)
        return self.wo(out.transpose(1, 2).reshape(B, T, -1))

    def project_kv(self, x, rope) -> tuple[torch.Tensor, torch.Tensor]:
        """Rotated keys and values [B, H_kv, T, D] of x [B, T, dim], as forward makes them
        (generation prefill stores them; bltx/model/cache.py)."""
        B, T, _ = x.shape
        k = self.wk(x).view(B, T, self.n_kv_heads, self.head_dim).transpose(1, 2)
        v = self.wv(x).view(B, T, self.n_kv_heads, self.head_dim).transpose(1, 2)
        cos, sin = rope
        return apply_rope(k, cos, sin), v

    def step(self, x, kv, info) -> torch.Tensor:
        """T new positions per row, x [B, T, dim]: write their keys/values into the KVCache
        `kv` at info.slot, attend over the cached keys info.mask allows (bltx/model/cache.py)."""
        B, T, _ = x.shape
        q = self.wq(x).view(B, T, self.n_heads, self.head_dim).transpose(1, 2)
        k = self.wk(x).view(B, T, self.n_kv_heads, self.head_dim).transpose(1, 2)
        v = self.wv(x).view(B, T, self.n_kv_heads, self.head_dim).transpose(1, 2)
        cos, sin = info.rope
        q, k = apply_rope(q, cos, sin), apply_rope(k, cos, sin)
        kv.write(info.slot, k, v)
        n = info.mask.shape[-1]  # a bounded step reads only the slots its mask covers
        out = F.scaled_dot_product_attention(
            q, kv.k[:, :, :n], kv.v[:, :, :n], attn_mask=info.mask, enable_gqa=self.n_heads != self.n_kv_heads
        )
        return self.wo(out.transpose(1, 2).reshape(B, T, -1))

    def init_weights(self) -> None:
        for lin in (self.wq, self.wk, self.wv, self.wo):
            init_linear(lin)


class CrossAttention(nn.Module):
    """Cross-attention with RMSNorm on queries and keys, no RoPE.

    Returns `x + attention`, and callers add that to their stream again: this doubled
    residual is how the released BLT (and HF's port) computes it, so converted weights
    produce the same numbers.
    """

    def __init__(self, dim: int, n_heads: int, n_kv_heads: int, norm_eps: float = 1e-5):
        super().__init__()
        self.n_heads = n_heads
        self.n_kv_heads = n_kv_heads
        self.head_dim = dim // n_heads
        self.q_norm = RMSNorm(dim, norm_eps)
        self.k_norm = RMSNorm(dim, norm_eps)
        self.wq = nn.Linear(dim, n_heads * self.head_dim, bias=False)
        self.wk = nn.Linear(dim, n_kv_heads * self.head_dim, bias=False)
        self.wv = nn.Linear(dim, n_kv_heads * self.head_dim, bias=False)
        self.wo = nn.Linear(n_heads * self.head_dim, dim, bias=False)

    def forward(self, x, kv, mask, backend) -> torch.Tensor:
        B, Lq, _ = x.shape
        Lkv = kv.shape[1]
        q = self.wq(self.q_norm(x)).view(B, Lq, self.n_heads, self.head_dim).transpose(1, 2)
        kvn = self.k_norm(kv)
        k = self.wk(kvn).view(B, Lkv, self.n_kv_heads, self.head_dim).transpose(1, 2)
        v = self.wv(kvn).view(B, Lkv, self.n_kv_heads, self.head_dim).transpose(1, 2)
        out = run_attention(backend, q, k, v, mask)
        return x + self.wo(out.transpose(1, 2).reshape(B, Lq, -1))

    def project_kv(self, kv: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Keys and values [B, H_kv, L, D] of kv [B, L, dim]: a decoding step computes them
        once per patch and reuses them for every byte that reads the patch."""
        B, L, _ = kv.shape
        kvn = self.k_norm(kv)
        k = self.wk(kvn).view(B, L, self.n_kv_heads, self.head_dim).transpose(1, 2)
        v = self.wv(kvn).view(B, L, self.n_kv_heads, self.head_dim).transpose(1, 2)
        return k, v

    def step(self, x, k, v, valid: torch.Tensor) -> torch.Tensor:
        """x [B, T, dim] attends to all of k, v [B, H_kv, L, D]; rows with valid False read
        nothing (zero attention, as the masked forward gives them)."""
        B, T, _ = x.shape
        q = self.wq(self.q_norm(x)).view(B, T, self.n_heads, self.head_dim).transpose(1, 2)
        out = F.scaled_dot_product_attention(q, k, v, enable_gqa=self.n_heads != self.n_kv_heads)
        out = out * valid.to(out.dtype)[:, None, None, None]
        return x + self.wo(out.transpose(1, 2).reshape(B, T, -1))

    def init_weights(self) -> None:
        self.q_norm.init_weights()
        self.k_norm.init_weights()
        for lin in (self.wq, self.wk, self.wv, self.wo):
            init_linear(lin)
