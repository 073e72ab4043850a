"""Sliding-window causal self-attention in blocks, so its cost grows with T x window.

Window semantics (the same as the dense mask `window_mask`): query i sees keys j with
i - window < j <= i, i.e. `window` keys including itself.

With the sequence cut into blocks of W = window positions, every key a query of block b
may see lies in block b or block b-1. So each query block runs one small attention over
the 2W keys of those two blocks with a fixed [W, 2W] band mask: T x 2W scores instead of
T x T. The only block that differs is block 0, whose "previous block" is padding in front
of the sequence; its mask also hides those keys. T is padded at the end to a multiple of
W; padded keys come after every real query (hidden by causality) and padded queries are
cut off. All shapes depend on (T, W) only, so the graph compiles with fullgraph=True, and
the work is plain SDPA, so it runs forward and backward on CPU and CUDA.

With document ids (data.document_mask), the band also requires query and key to be in the
same document; the mask then has one [n_blocks, W, 2W] slice per batch row. Padding at the
end is a document of its own, so a padded query still sees itself (no empty softmax row).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F


def window_mask(length: int, window: int, device) -> torch.Tensor:
    """Dense boolean [L, L] reference mask: query i sees keys i - window < j <= i."""
    pos = torch.arange(length, device=device)
    diff = pos[:, None] - pos[None, :]
    return (diff >= 0) & (diff < window)


def use_blocked(length: int, window: int) -> bool:
    """Blocks pay only when they skip work: at T <= 2W the two-block band is as large as
    the dense T x T square, and the block copies cost extra."""
    return 2 * window < length


class RunsItself:
    """A mask description that computes its own attention, `attend(q, k, v, scale)`, rather
    than going to the backend that made it (bltx/model/attention.py `run_attention`): the
    layouts dense masks would waste memory on (blocked windows, patch-local queries/keys)."""

    def attend(self, q, k, v, scale: float | None = None) -> torch.Tensor:
        raise NotImplementedError


@dataclass
class BlockedWindow(RunsItself):
    """Mask description of blocked sliding-window attention; runs itself (see `attend`)."""

    length: int
    window: int
    mask: torch.Tensor  # [1 or B, n_blocks, W, 2W] bool: block b's queries x keys of blocks b-1, b

    def attend(self, q, k, v, scale: float | None = None) -> torch.Tensor:
        return blocked_window_attention(q, k, v, self, scale)


def blocked_window_mask(length: int, window: int, device, doc: torch.Tensor | None = None) -> BlockedWindow:
    """`doc` [B, length]: document id of each position (keys of another document hidden)."""
    W = window
    n_blocks = -(-length // W)
    r = torch.arange(W, device=device)[:, None]  # query offset in its block
    c = torch.arange(2 * W, device=device)[None, :]  # key offset from the previous block's start
    diff = W + r - c  # query position minus key position
    band = (diff >= 0) & (diff < W)
    key_pos = (torch.arange(n_blocks, device=device)[:, None, None] - 1) * W + c
    mask = (band & (key_pos >= 0)).unsqueeze(0)
    if doc is not None:
        end = n_blocks * W - length
        # Front padding is hidden by key_pos already; end padding is one document (-2).
        q_doc = F.pad(doc, (0, end), value=-2).reshape(-1, n_blocks, W)
        k_doc = F.pad(doc, (W, end), value=-2).reshape(-1, n_blocks + 1, W)
        k_doc = torch.cat([k_doc[:, :-1], k_doc[:, 1:]], dim=2)  # [B, n, 2W]
        mask = mask & (q_doc[..., :, None] == k_doc[..., None, :])
    return BlockedWindow(length, W, mask)


def repeat_kv_heads(x: torch.Tensor, heads: int) -> torch.Tensor:
    """[B, Hkv, L, D] -> [B, heads, L, D] for GQA: query head h reads kv head
    h // (heads / Hkv), as SDPA's enable_gqa does (kernels without GQA need it spelled out)."""
    B, Hx, L, D = x.shape
    if Hx == heads:
        return x
    return x[:, :, None].expand(B, Hx, heads // Hx, L, D).reshape(B, heads, L, D)


def _blocks(x: torch.Tensor, heads: int, front: int, end: int, W: int) -> torch.Tensor:
    """[B, Hx, T, D] -> [B*heads, n, W, D], padded by `front`/`end` positions."""
    x = F.pad(repeat_kv_heads(x, heads), (0, 0, front, end))
    return x.reshape(-1, x.shape[2] // W, W, x.shape[3])


def blocked_window_attention(q, k, v, mask: BlockedWindow, scale: float | None = None) -> torch.Tensor:
    """q [B, H, T, D], k/v [B, Hkv, T, D] -> [B, H, T, D], equal to SDPA with `window_mask`."""
    B, H, T, D = q.shape
    W = mask.window
    end = mask.mask.shape[1] * W - T
    qb = _blocks(q, H, 0, end, W)  # [BH, n, W, D]
    kb, vb = (_blocks(x, H, W, end, W) for x in (k, v))  # [BH, n+1, W, D]
    # Keys of block b = blocks b-1 and b of the front-padded sequence, side by side.
    kk = torch.cat([kb[:, :-1], kb[:, 1:]], dim=2)
    vv = torch.cat([vb[:, :-1], vb[:, 1:]], dim=2)
    band = mask.mask
    if band.shape[0] > 1:  # one slice per batch row (document ids): the same for every head
        band = band[:, None].expand(B, H, *band.shape[1:]).reshape(B * H, *band.shape[1:])
    out = F.scaled_dot_product_attention(qb, kk, vv, attn_mask=band, scale=scale)
    return out.reshape(B, H, -1, D)[:, :, :T]
