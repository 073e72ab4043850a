"""Patchers that need no model: every byte, fixed stride, and after runs of spaces."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from bltx.checks import at_least
from bltx.bytes import OFFSET
from bltx.patching.base import Patcher
from bltx.registry import register


@register("patcher", "byte")
class BytePatcher(Patcher):
    """Every byte is its own patch: the latent model sees bytes (a byte-level baseline)."""

    @dataclass
    class Config:
        pass

    def __init__(self, cfg: Config | None = None):
        super().__init__(max_patch_length=None)

    def compute_starts(self, ids, entropies=None):
        return torch.ones_like(ids, dtype=torch.bool)

    online_steps = True

    def _online_init(self, state, batch, capacity, device):
        pass

    def _online_prefill(self, ids, lengths, state):
        return torch.ones(ids.shape[0], ids.shape[1] + 1, dtype=torch.bool, device=ids.device)

    def _online_step(self, ids, state):
        return torch.ones_like(ids, dtype=torch.bool)


@register("patcher", "static")
class StaticPatcher(Patcher):
    """Fixed-stride patches of `stride` bytes (the paper's "static patching")."""

    @dataclass
    class Config:
        stride: int = 4

        def __post_init__(self):
            at_least("stride", self.stride, 1)

    def __init__(self, cfg: Config):
        super().__init__(max_patch_length=None)
        self.stride = cfg.stride

    def compute_starts(self, ids, entropies=None):
        pos = torch.arange(ids.shape[-1], device=ids.device)
        return (pos % self.stride == 0).expand_as(ids)

    online_steps = True

    def _online_init(self, state, batch, capacity, device):
        pass

    def _online_prefill(self, ids, lengths, state):
        return self.compute_starts(torch.nn.functional.pad(ids, (0, 1)))

    def _online_step(self, ids, state):
        return (state.pos + 1) % self.stride == 0  # the position alone decides


@register("patcher", "space")
class SpacePatcher(Patcher):
    """A patch ends at the first space-like byte after a non-space byte.

    Space-like bytes are `space_chars` (whitespace by default) and the special ids (BOS, EOS,
    PAD), so the first byte after BOS always opens a patch. "the  cat" patches as
    "the " | " cat": each word keeps the space that ends it; further spaces of a run lead the
    next patch. (Ending a patch after a whole run of spaces would need to see the first
    non-space byte, i.e. peek at the byte whose patch is being decided; see `Patcher`.)
    """

    @dataclass
    class Config:
        space_chars: str = " \t\n\r\x0b\x0c"
        max_patch_length: int | None = None

    def __init__(self, cfg: Config):
        super().__init__(max_patch_length=cfg.max_patch_length)
        table = torch.zeros(256 + OFFSET, dtype=torch.bool)
        table[:OFFSET] = True
        for byte in cfg.space_chars.encode("utf-8"):
            table[byte + OFFSET] = True
        # A buffer (not a parameter) so it follows .to(device) and stays out of state_dict.
        self.register_buffer("is_space", table, persistent=False)

    def compute_starts(self, ids, entropies=None):
        space = self.is_space[ids]
        # starts[t] = space[t-1] & ~space[t-2]; position 0 is forced by Patcher.forward.
        prev = torch.nn.functional.pad(space[:, :-1], (1, 0), value=False)
        prev2 = torch.nn.functional.pad(space[:, :-2], (2, 0), value=False)
        return prev & ~prev2

    # Online: whether the byte before the newest was space-like is all the state needed.
    online_steps = True

    def _online_init(self, state, batch, capacity, device):
        state.extra["space"] = torch.zeros(batch, dtype=torch.bool, device=device)

    def _online_prefill(self, ids, lengths, state):
        rows = torch.arange(ids.shape[0], device=ids.device)
        state.extra["space"].copy_(self.is_space[ids[rows, lengths - 1]])
        return self.compute_starts(torch.nn.functional.pad(ids, (0, 1)))

    def _online_step(self, ids, state):
        space, before = self.is_space[ids], state.extra["space"]
        opens = space & ~before
        before.copy_(space)
        return opens
