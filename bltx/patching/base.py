"""The patcher protocol and conversions between the three ways of describing patches.

A patching of a batch of byte ids `[B, T]` is described, interchangeably, by
  - starts      bool  [B, T]  True where a patch begins (starts[:, 0] is always True);
  - patch_ids   long  [B, T]  index of the patch each byte belongs to (cumsum(starts) - 1);
  - lengths     long  [B, P]  bytes per patch, zero-padded on the right to a static P.

All helpers are pure tensor ops (no `.item()`, no Python loops over positions) so they can sit
inside a compiled forward.
"""

from __future__ import annotations

import torch
from torch import nn

from bltx.model.cache import PatchState


class Patcher(nn.Module):
    """Maps byte ids [B, T] to patch starts [B, T] (bool).

    Contract (checked by property tests for every registered patcher):
      - starts[:, 0] is True; every byte is in exactly one contiguous non-empty patch;
      - strictly causal: starts[:, t] depends only on ids[:, :t], the bytes BEFORE t. The
        decision that byte t opens a patch is made before byte t is seen (as entropy
        patching does: H(x_t) is computed from x_<t). The model relies on this: when it
        predicts byte t it must know whether byte t opens a new patch, so it patches one
        position past the input (see `model/blt.py`); a patcher that peeked at byte t
        would leak the answer into the prediction;
      - deterministic; and no patch longer than `max_patch_length` when one is set.

    Subclasses implement `compute_starts`; `forward` applies the max-length split and forces
    the first start. `entropies` ([B, T] float, entropy of the prediction made at each
    position) may be passed to patchers that use them; others ignore it.
    """

    # True when starts[:, t] depends on ids[:, :t] only (the contract above). A plugin whose
    # patcher must see byte t to decide (e.g. "a patch starts at the first letter after
    # spaces") sets this False; the model then lets byte t read only patches that ended
    # before t's patch began, which stays causal but wastes the newest patch. Property tests
    # check strict causality for every patcher that claims it.
    predicts_next_start: bool = True

    def __init__(self, max_patch_length: int | None = None):
        super().__init__()
        self.max_patch_length = max_patch_length

    def compute_starts(self, ids: torch.Tensor, entropies: torch.Tensor | None = None) -> torch.Tensor:
        raise NotImplementedError

    def init_weights(self) -> None:
        """Patchers without weights have nothing to initialise."""

    def forward_flops(self, seq_len: int, patch_len: float) -> float:
        """Forward FLOPs per byte; rule-based patchers cost nothing next to the model."""
        return 0.0

    def forward(self, ids: torch.Tensor, entropies: torch.Tensor | None = None) -> torch.Tensor:
        starts = self.compute_starts(ids, entropies=entropies).to(torch.bool)
        starts = force_first_start(starts)
        if self.max_patch_length is not None:
            starts = split_long_patches(starts, self.max_patch_length)
        return starts

    # -- online patching for generation -------------------------------------------------------
    # state = init_state(B, capacity); starts [B, T+1] = prefill_state(ids, lengths, state)
    # (column lengths[b]: does the byte after row b's prompt open a patch?); then per new byte
    # opens [B] = step_state(ids [B], state): does the byte after it open a patch? Subclasses
    # keep bounded state in `_online_init / _online_prefill / _online_step` (rule before the
    # max-length split); the fallback here keeps the ids and re-runs `compute_starts` on the
    # whole buffer, O(prefix) per byte: `online_steps` False says so.
    online_steps: bool = False

    def init_state(self, batch: int, capacity: int, device) -> PatchState:
        zeros = torch.zeros(batch, dtype=torch.long, device=device)
        state = PatchState(zeros, zeros.clone())
        self._online_init(state, batch, capacity, device)
        return state

    def prefill_state(self, ids: torch.Tensor, lengths: torch.Tensor, state: PatchState) -> torch.Tensor:
        starts = force_first_start(self._online_prefill(ids, lengths, state).bool())
        if self.max_patch_length is not None:
            starts = split_long_patches(starts, self.max_patch_length)
        cols = torch.arange(starts.shape[1], device=ids.device)[None]
        upto = starts & (cols <= lengths[:, None])
        state.last_start.copy_(torch.where(upto, cols, 0).amax(dim=-1))
        state.pos.copy_(lengths)
        return starts

    def step_state(self, ids: torch.Tensor, state: PatchState) -> torch.Tensor:
        opens = self._online_step(ids, state).bool()
        nxt = state.pos + 1
        if self.max_patch_length is not None:
            opens = opens | (nxt - state.last_start >= self.max_patch_length)
        state.last_start.copy_(torch.where(opens, nxt, state.last_start))
        state.pos.copy_(nxt)
        return opens

    def _online_init(self, state: PatchState, batch: int, capacity: int, device) -> None:
        from bltx.bytes import PAD_ID

        state.extra["ids"] = torch.full((batch, capacity + 1), PAD_ID, dtype=torch.long, device=device)

    def _online_prefill(self, ids: torch.Tensor, lengths: torch.Tensor, state: PatchState) -> torch.Tensor:
        from bltx.bytes import PAD_ID

        buf = state.extra["ids"]
        T = ids.shape[1]
        cols = torch.arange(T, device=ids.device)[None]
        buf[:, :T] = torch.where(cols < lengths[:, None], ids, PAD_ID)
        return self.compute_starts(torch.nn.functional.pad(ids, (0, 1), value=PAD_ID))

    def _online_step(self, ids: torch.Tensor, state: PatchState) -> torch.Tensor:
        buf, rows = state.extra["ids"], torch.arange(ids.shape[0], device=ids.device)
        buf[rows, state.pos] = ids
        return self.compute_starts(buf)[rows, state.pos + 1]


def force_first_start(starts: torch.Tensor) -> torch.Tensor:
    first = torch.zeros_like(starts)
    first[:, 0] = True
    return starts | first


def split_long_patches(starts: torch.Tensor, max_len: int) -> torch.Tensor:
    """Add starts so no patch exceeds `max_len`: a patch of length L becomes ceil(L/max_len)
    patches of max_len bytes followed by the remainder (as HF `process_patch_lengths`)."""
    if max_len < 1:
        raise ValueError(f"max_patch_length must be >= 1, got {max_len}")
    T = starts.shape[-1]
    pos = torch.arange(T, device=starts.device).expand_as(starts)
    last_start = torch.where(starts, pos, torch.zeros_like(pos)).cummax(dim=-1).values
    return starts | ((pos - last_start) % max_len == 0)


def starts_to_patch_ids(starts: torch.Tensor) -> torch.Tensor:
    return starts.long().cumsum(dim=-1) - 1


def patch_index(starts_ext: torch.Tensor, lookahead: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """(patch_ids [B, T], dec_patch_ids [B, T]) from starts bool [B, T+1] (the last column:
    whether the byte after the window opens a patch). The patch a byte belongs to, and the
    latent state its decoder reads: with `lookahead` (the BLT/HF rule) patch_id(t+1) - 1, so
    a patch's last byte reads that complete patch; else patch_id(t) - 1, the last patch
    that ended before t's began. One definition for the forward and the cached prefill."""
    patch_ids = starts_to_patch_ids(starts_ext[:, :-1])
    if lookahead:
        return patch_ids, starts_ext.long().cumsum(-1)[:, 1:] - 2
    return patch_ids, patch_ids - 1


def starts_to_lengths(starts: torch.Tensor, max_patches: int | None = None) -> torch.Tensor:
    """Patch lengths [B, P], zero-padded. P = max_patches if given (static, compile-friendly),
    else the largest patch count in the batch (needs a host sync)."""
    patch_ids = starts_to_patch_ids(starts)
    if max_patches is None:
        max_patches = int(starts.sum(dim=-1).max())
    lengths = torch.zeros(starts.shape[0], max_patches, dtype=torch.long, device=starts.device)
    # Bytes whose patch index is >= max_patches are dropped: the caller chose P too small.
    valid = patch_ids < max_patches
    lengths.scatter_add_(1, patch_ids.clamp(max=max_patches - 1), valid.long())
    return lengths


def lengths_to_starts(lengths: torch.Tensor, seq_len: int) -> torch.Tensor:
    """Inverse of `starts_to_lengths` for lengths summing to seq_len (padding zeros ignored)."""
    offsets = lengths.cumsum(dim=-1) - lengths  # start offset of each patch
    starts = torch.zeros(lengths.shape[0], seq_len + 1, dtype=torch.bool, device=lengths.device)
    nonempty = lengths > 0
    starts.scatter_(1, torch.where(nonempty, offsets, seq_len).clamp(max=seq_len), nonempty)
    # Scatter with a False value may have overwritten a True at seq_len only (the dump slot).
    return starts[:, :seq_len]


def lengths_to_patch_ids(lengths: torch.Tensor, seq_len: int) -> torch.Tensor:
    return starts_to_patch_ids(lengths_to_starts(lengths, seq_len))
