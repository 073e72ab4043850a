"""SwiGLU feed-forward block."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from bltx.model.init import init_linear


def default_ffn_dim(dim: int) -> int:
    """Hidden width used when a config leaves `ffn_dim` unset (8/3 * dim, as in HF BLT)."""
    return int(8 * dim / 3)


class FeedForward(nn.Module):
    """w2(silu(w1 x) * w3 x). Names follow torchtitan so tensor-parallel plans carry over."""

    def __init__(self, dim: int, hidden_dim: int):
        super().__init__()
        self.w1 = nn.Linear(dim, hidden_dim, bias=False)  # gate
        self.w3 = nn.Linear(dim, hidden_dim, bias=False)  # up
        self.w2 = nn.Linear(hidden_dim, dim, bias=False)  # down

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.w2(F.silu(self.w1(x)) * self.w3(x))

    def init_weights(self) -> None:
        for lin in (self.w1, self.w3, self.w2):
            init_linear(lin)
