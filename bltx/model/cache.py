"""Generation caches and the cache protocol that each BLT component implements.

A component that generates incrementally offers three methods (`CachedStep`):

    cache = module.init_cache(batch, capacity)   # static shapes, on the module's device
    out = module.prefill(x, ..., lengths, cache)  # whole right-padded prompts, one parallel pass
    out = module.step(x, cache, ...)              # one new position per row

with component-specific arguments (B rows, T prompt bytes, d widths):
    entropy model   prefill(ids [B,T], lengths, c) -> logits [B,T,V]; step(ids [B,1], c) -> [B,1,V]
    byte embedder   prefill(ids [B,T], lengths, c) -> h [B,T,d];      step(ids [B,1], c) -> [B,1,d]
    encoder         prefill(h, patch_ids, P, lengths, c) -> (h, patches); step(h [B,1,d], c) -> h;
                    close(c, start [B], span) -> the patch [start, pos) of each row, [B,1,d_latent]
    latent          prefill(x [B,P,d], counts [B], c) -> y; step(x [B,1,d], c, active [B], bound=None)
                    -> y (bound: an int > every row's patch count, what attention needs read)
    decoder         prefill(h, latent, dec_patch_ids, lengths, c) -> logits;
                    set_patch(latent_state [B,1,d_latent], active [B], c); step(h [B,1,d], c) -> logits
Patchers keep bounded online state instead (`Patcher.init_state / prefill_state / step_state`).

Rows advance at their own positions (`pos` [B]), so prompts of different lengths share a
batch. Prefill takes right-padded prompts and `lengths`: a causal component's states before
lengths[b] do not depend on the padding, and whatever the padding leaves in a cache beyond a
row's length is overwritten before it is read (the query at position p reads keys <= p, and
key p is written first). A windowed layer keeps only `window` keys in a ring (slot p % window),
so a step costs O(window), not O(prefix).

Prefill captures what the caches need from the model's own forward through forward hooks
(`capture_inputs`), so forward code paths stay exactly those of training.
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

import torch
from torch import nn

from bltx.model.rope import rope_cos_sin

# Extra ring slots of windowed caches: the most positions one multi-position step may write.
SPARE = 16

__all__ = ["CachedStep", "KVCache", "StackCache", "StepInfo", "PatchState", "capture_inputs", "prefill_stack", "row_gather"]


@runtime_checkable
class CachedStep(Protocol):
    """Incremental generation (see the module doc for each component's arguments)."""

    def init_cache(self, batch: int, capacity: int) -> Any: ...

    def prefill(self, *args, **kwargs) -> Any: ...

    def step(self, *args, **kwargs) -> Any: ...


def row_gather(x: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """x [B, T, ...], index [B] -> x[b, index[b]] as [B, 1, ...]."""
    rows = torch.arange(x.shape[0], device=x.device)
    return x[rows, index].unsqueeze(1)


@dataclass
class StepInfo:
    """What every layer of a stack needs for one step: rotations, write slot, key mask."""

    rope: tuple[torch.Tensor, torch.Tensor] | None  # cos, sin [B, 1, T, head_dim]
    slot: torch.Tensor  # [B, T] long
    mask: torch.Tensor  # [B, 1, T, S] bool (S = keys read: the whole ring, or `prepare`'s bound)


class KVCache:
    """Keys and values [B, H_kv, S, head_dim] of one attention layer, slot = position % S."""

    def __init__(self, batch: int, heads: int, head_dim: int, size: int, like: torch.Tensor):
        self.k = torch.zeros(batch, heads, size, head_dim, dtype=like.dtype, device=like.device)
        self.v = torch.zeros_like(self.k)
        self.size = size

    def write(self, slot: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> None:
        """k, v [B, H, T, D] into slots slot[b, t] of each row b."""
        rows = torch.arange(k.shape[0], device=k.device)[:, None]
        self.k[rows, :, slot] = k.transpose(1, 2)
        self.v[rows, :, slot] = v.transpose(1, 2)

    def fill(self, k: torch.Tensor, v: torch.Tensor, lengths: torch.Tensor) -> None:
        """Prefill: keep, per row, the last S positions before lengths[b] of k, v [B,H,T,D]."""
        B, H, T, D = k.shape
        last = lengths[:, None] - 1
        j = torch.arange(self.size, device=k.device)[None]
        # The position slot j holds: the largest p < length with p % S == j (clamped where no
        # such p exists; the key mask hides those slots until a step writes them).
        p = (last - torch.remainder(last - j, self.size)).clamp(0, T - 1)
        idx = p[:, None, :, None].expand(B, H, self.size, D)
        self.k.copy_(torch.gather(k, 2, idx))
        self.v.copy_(torch.gather(v, 2, idx))


class StackCache:
    """The caches of a stack of attention layers, the rows' positions and the RoPE table."""

    def __init__(self, n_layers: int, dims, batch: int, capacity: int, window: int | None, like: torch.Tensor):
        # A windowed ring keeps SPARE slots beyond the window: a multi-position step (and its
        # rollback, for speculative decoding) writes up to SPARE keys that the earlier of its
        # queries must not lose.
        self.window = window
        self.size = capacity if window is None else min(window + SPARE, capacity)
        self.layers = [KVCache(batch, dims.kv_heads, dims.head_dim, self.size, like) for _ in range(n_layers)]
        self.pos = torch.zeros(batch, dtype=torch.long, device=like.device)
        # The table a full forward over `capacity` positions builds: bit-identical rotations.
        self.cos, self.sin = rope_cos_sin(capacity, dims.head_dim, dims.rope_theta, like.device)
        self.slots = torch.arange(self.size, device=like.device)

    def prepare(self, bound: int | None = None, count: int = 1) -> StepInfo:
        """The next `count` positions of every row. `bound` (unwindowed caches only): the host
        knows no row is past position bound - 1, so attention reads the first `bound` slots."""
        q = self.pos[:, None] + torch.arange(count, device=self.pos.device)[None]  # [B, T]
        rope = (self.cos[q][:, None], self.sin[q][:, None])
        slots = self.slots if bound is None else self.slots[:bound]
        # Slot j holds the newest position = j (mod size) written by this step; a query reads
        # it if that position is not in its future, not negative (never written), and within
        # the window. Slots a rolled-back step wrote fail one of these until rewritten.
        last = q[:, -1:]
        held = last - torch.remainder(last - slots[None, :], self.size)  # [B, S]
        mask = (held[:, None, :] <= q[:, :, None]) & (held[:, None, :] >= 0)
        if self.window is not None:
            mask = mask & (q[:, :, None] - held[:, None, :] < self.window)
        return StepInfo(rope, torch.remainder(q, self.size), mask[:, None])

    def advance(self, active: torch.Tensor | None = None, count: int = 1) -> None:
        self.pos.add_(count if active is None else active.long())


@dataclass
class PatchState:
    """Online patcher state per row: bytes consumed (`pos`), start of the open patch, and
    whatever the patcher keeps (`extra`: an entropy model cache, a trie node, ...)."""

    pos: torch.Tensor
    last_start: torch.Tensor
    extra: dict = field(default_factory=dict)


@contextmanager
def capture_inputs(modules: dict[str, nn.Module], outputs: bool = False):
    """Record the first positional input (or the output) of each module during a forward."""
    seen: dict[str, torch.Tensor] = {}
    handles = []
    for name, module in modules.items():
        def hook(mod, args, out, name=name):
            seen[name] = out if outputs else args[0]
        handles.append(module.register_forward_hook(hook))
    try:
        yield seen
    finally:
        for h in handles:
            h.remove()


def prefill_stack(layers: nn.ModuleDict, cache: StackCache, lengths: torch.Tensor, run):
    """Run `run()` (a forward through `layers`) and fill `cache` from it: each block's
    attention input becomes its rotated keys/values, the rows' positions become `lengths`."""
    with capture_inputs({name: layer.attention for name, layer in layers.items()}) as seen:
        out = run()
    T = next(iter(seen.values())).shape[1]
    rope = (cache.cos[:T], cache.sin[:T])
    for i, (name, layer) in enumerate(layers.items()):
        k, v = layer.attention.project_kv(seen[name], rope)
        cache.layers[i].fill(k, v, lengths)
    cache.pos.copy_(lengths)
    return out
