"""Patch cross-attention whose cost grows with bytes x k, not bytes x patches.

Both BLT cross-attentions are local to one patch, so a dense [P*k, T] group mask computes
almost only masked-out scores. These layouts compute just the scores that count and equal
the dense reference (`SdpaBackend.group_mask`), zero rows included:

- `PatchQueries` (encoder): query slot p*k + j reads the bytes of patch p. Each byte meets
  the k queries of its own patch (a gather), giving T x k scores; the softmax over each
  patch's bytes is a segment softmax (per-patch max, sum and weighted sum of values via
  index_add). No static bound on the patch length is needed, so it works for every
  patcher, `max_patch_length` set or not.
- `PatchKeys` (decoder): byte t reads the k keys of one patch, so gathering that patch's k
  keys/values per byte and a softmax over k is exact: T x k scores.

Softmax statistics are accumulated in fp32 (as fused attention kernels do). Indices are
built once per forward and shared by every layer; all shapes depend on (B, T, P, k) only,
so the forward compiles with fullgraph=True.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from bltx.model.window_attention import RunsItself, repeat_kv_heads


def _rows(x: torch.Tensor, heads: int) -> torch.Tensor:
    """[B, Hx, L, D] -> [B*L, heads, D], kv heads repeated for GQA."""
    B, _, L, D = x.shape
    return repeat_kv_heads(x, heads).transpose(1, 2).reshape(B * L, heads, D)


@dataclass
class PatchQueries(RunsItself):
    """Encoder layout: P*k queries (patch-major), each reading the bytes of its patch."""

    seg: torch.Tensor  # [B*T] long: row b*(P+1) + patch of each byte; P = no query reads it
    num_patches: int
    k: int

    @classmethod
    def build(cls, patch_ids: torch.Tensor, num_patches: int, k: int) -> "PatchQueries":
        B, T = patch_ids.shape
        P = num_patches
        # Bytes outside 0..P-1 (ids >= P when a compiled P is too small) go to a dump row
        # per batch row, so no real patch reads them, as with the dense mask.
        pid = torch.where((patch_ids >= 0) & (patch_ids < P), patch_ids, P)
        base = torch.arange(B, device=patch_ids.device)[:, None] * (P + 1)
        return cls((base + pid).reshape(B * T), P, k)

    def attend(self, q, k, v, scale: float | None = None) -> torch.Tensor:
        """q [B, H, P*k, D], k/v [B, Hkv, T, D] -> [B, H, P*k, D]."""
        B, H, _, D = q.shape
        P, K = self.num_patches, self.k
        scale = D ** -0.5 if scale is None else scale
        seg = self.seg
        rows = B * (P + 1)
        qs = F.pad(q.transpose(1, 2).reshape(B, P, K, H, D), (0, 0, 0, 0, 0, 0, 0, 1))
        qg = qs.reshape(rows, K, H, D).index_select(0, seg)  # [B*T, k, H, D]: own patch's queries
        kb, vb = _rows(k, H), _rows(v, H)  # [B*T, H, D]
        s = (qg * kb[:, None]).sum(-1).float() * scale  # [B*T, k, H]
        # Shift by the per-patch max for a stable exp; the shift cancels in num / den, so
        # it carries no gradient (detached).
        idx = seg[:, None, None].expand_as(s)
        m = s.new_zeros(rows, K, H).scatter_reduce(0, idx, s.detach(), "amax", include_self=False)
        e = torch.exp(s - m.index_select(0, seg))
        den = s.new_zeros(rows, K, H).index_add(0, seg, e)
        num = s.new_zeros(rows, K, H, D).index_add(0, seg, e[..., None] * vb[:, None].float())
        # den >= 1 for a patch with bytes (its max term is exp(0)); an empty patch has
        # num = 0, so clamping gives the reference's zero output there.
        out = (num / den.clamp_min(1.0)[..., None]).to(q.dtype)
        out = out.reshape(B, P + 1, K, H, D)[:, :P].reshape(B, P * K, H, D)
        return out.transpose(1, 2)


@dataclass
class PatchKeys(RunsItself):
    """Decoder layout: byte t reads the k keys of patch ids[t]; other ids read nothing."""

    rows: torch.Tensor  # [B*T] long: row b*P + patch (clamped) of the keys each byte reads
    valid: torch.Tensor  # [B*T, 1, 1] bool: the id names a patch 0..P-1
    k: int

    @classmethod
    def build(cls, dec_patch_ids: torch.Tensor, num_patches: int, k: int) -> "PatchKeys":
        B, T = dec_patch_ids.shape
        P = num_patches
        valid = (dec_patch_ids >= 0) & (dec_patch_ids < P)
        base = torch.arange(B, device=dec_patch_ids.device)[:, None] * P
        rows = (base + dec_patch_ids.clamp(0, P - 1)).reshape(B * T)
        return cls(rows, valid.reshape(B * T, 1, 1), k)

    def attend(self, q, k, v, scale: float | None = None) -> torch.Tensor:
        """q [B, H, T, D], k/v [B, Hkv, P*k, D] -> [B, H, T, D]."""
        B, H, T, D = q.shape
        K = self.k
        scale = D ** -0.5 if scale is None else scale
        kg, vg = (_rows(x, H).reshape(-1, K, H, D).index_select(0, self.rows) for x in (k, v))
        s = (_rows(q, H)[:, None] * kg).sum(-1).float() * scale  # [B*T, k, H]
        w = torch.softmax(s, dim=1).to(vg.dtype)
        out = (w[..., None] * vg).sum(1) * self.valid.to(vg.dtype)
        return out.reshape(B, T, H, D).transpose(1, 2).to(q.dtype)
