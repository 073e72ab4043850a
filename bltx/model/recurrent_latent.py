"""A non-attention latent backbone: gated linear recurrence blocks (`latent.type = "recurrent"`).

Each block is pre-norm, like a transformer block, with the attention replaced by a diagonal
gated linear recurrence over patches (a minimal state-space / "minGRU"-style mixer):

    a_t = sigmoid(f_t)                          forget gate in (0, 1), per channel
    h_t = a_t * h_{t-1} + (1 - a_t) * v_t        the recurrence (h_{-1} = 0)
    y_t = wo(h_t * silu(g_t))                   output gate, projection back to dim

with f, v, g linear in the normed input. The recurrence is linear in h, so the whole
sequence is an associative scan over pairs (a, b): (a1, b1) then (a2, b2) is
(a1 * a2, a2 * b1 + b2). `linear_scan` evaluates it Hillis-Steele style in ceil(log2 P)
shifted multiply-adds: no Python loop over positions, no data-dependent shapes, so it
compiles with fullgraph=True; it is causal by construction (position t only ever combines
with positions before it). Cost is O(P log P * dim) per layer instead of attention's
O(P^2 * dim): FLOPs are counted by `forward_flops`.

It exists to prove the latent slot is truly swappable: nothing in the BLT assembly knows
it is not a transformer.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from bltx.checks import at_least
from bltx.model.cache import capture_inputs
from bltx.model.init import init_children, init_linear
from bltx.model.mlp import FeedForward, default_ffn_dim
from bltx.model.norm import RMSNorm
from bltx.registry import register


def linear_scan(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """h_t = a_t * h_{t-1} + b_t along dim 1 (h_{-1} = 0); a, b [B, P, D] -> h [B, P, D].

    Inclusive Hillis-Steele scan: after step k, position t holds the composition of the
    2^(k+1) positions ending at t. Positions before the start are the identity (a=1, b=0).
    """
    P = a.shape[1]
    shift = 1
    while shift < P:  # a static loop over log2(P) steps (P is a shape, not a tensor value)
        a_prev = F.pad(a[:, :-shift], (0, 0, shift, 0), value=1.0)
        b_prev = F.pad(b[:, :-shift], (0, 0, shift, 0), value=0.0)
        b = a * b_prev + b
        a = a * a_prev
        shift *= 2
    return b


class GatedRecurrence(nn.Module):
    """The token mixer: gates and values from x, a linear scan over positions, output gate."""

    def __init__(self, dim: int):
        super().__init__()
        self.w_forget = nn.Linear(dim, dim, bias=True)
        self.w_value = nn.Linear(dim, dim, bias=False)
        self.w_gate = nn.Linear(dim, dim, bias=False)
        self.wo = nn.Linear(dim, dim, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # The scan multiplies many gates together: run it in fp32 whatever the autocast.
        a = torch.sigmoid(self.w_forget(x).float())
        b = (1.0 - a) * self.w_value(x).float()
        h = linear_scan(a, b).to(x.dtype)
        return self.wo(h * F.silu(self.w_gate(x)))

    def states(self, x: torch.Tensor) -> torch.Tensor:
        """The fp32 recurrent state after each position of x [B, P, dim] (generation prefill)."""
        a = torch.sigmoid(self.w_forget(x).float())
        return linear_scan(a, (1.0 - a) * self.w_value(x).float())

    def step(self, x: torch.Tensor, state: torch.Tensor, active: torch.Tensor) -> torch.Tensor:
        """One position, x [B, 1, dim]; `state` [B, dim] fp32 advances in place where active."""
        a = torch.sigmoid(self.w_forget(x[:, 0]).float())
        h = a * state + (1.0 - a) * self.w_value(x[:, 0]).float()
        state.copy_(torch.where(active[:, None], h, state))
        return self.wo((h.to(x.dtype) * F.silu(self.w_gate(x[:, 0])))[:, None])

    def init_weights(self) -> None:
        for lin in (self.w_forget, self.w_value, self.w_gate, self.wo):
            init_linear(lin)
        # Forget-gate biases spread over memory lengths of ~1.5 to ~64 positions (a in
        # [0.4, 0.985]), so some channels track the last patch and some the long context.
        dim = self.w_forget.bias.shape[0]
        keep = torch.linspace(0.4, 0.985, dim, device=self.w_forget.bias.device)
        with torch.no_grad():
            self.w_forget.bias.copy_(torch.log(keep / (1 - keep)))


class RecurrentBlock(nn.Module):
    """x + mixer(norm(x)); then x + ffn(norm(x))."""

    def __init__(self, dim: int, hidden_dim: int, norm_eps: float):
        super().__init__()
        self.mixer_norm = RMSNorm(dim, norm_eps)
        self.mixer = GatedRecurrence(dim)
        self.ffn_norm = RMSNorm(dim, norm_eps)
        self.feed_forward = FeedForward(dim, hidden_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.mixer(self.mixer_norm(x))
        return x + self.feed_forward(self.ffn_norm(x))

    def init_weights(self) -> None:
        self.mixer_norm.init_weights()
        self.mixer.init_weights()
        self.ffn_norm.init_weights()
        self.feed_forward.init_weights()


@register("latent", "recurrent")
class RecurrentLatent(nn.Module):
    """Latent backbone of gated linear recurrence blocks (no attention, no RoPE).

    Follows the latent interface of `bltx/model/latent.py`: `.dim`, [B, P, dim] -> [B, P, dim]
    causal over P, `init_weights()`; the `backend` context is accepted and unused.
    """

    @dataclass
    class Config:
        dim: int = 512
        n_layers: int = 4
        ffn_dim: int | None = None
        norm_eps: float = 1e-5
        final_norm: bool = False

        def __post_init__(self):
            for name in ("dim", "n_layers"):
                at_least(name, getattr(self, name), 1)

        @property
        def hidden_dim(self) -> int:
            return self.ffn_dim or default_ffn_dim(self.dim)

    def __init__(self, cfg: Config, backend=None, **context):
        super().__init__()
        self.cfg = cfg
        self.dim = cfg.dim
        self.layers = nn.ModuleDict(
            {str(i): RecurrentBlock(cfg.dim, cfg.hidden_dim, cfg.norm_eps) for i in range(cfg.n_layers)}
        )
        self.norm = RMSNorm(cfg.dim, cfg.norm_eps) if cfg.final_norm else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for layer in self.layers.values():
            x = layer(x)
        return self.norm(x) if self.norm is not None else x

    # -- cached generation (bltx/model/cache.py): the state is one fp32 vector per layer ------

    def init_cache(self, batch: int, capacity: int) -> list[torch.Tensor]:
        device = self.layers["0"].mixer.wo.weight.device
        return [torch.zeros(batch, self.cfg.dim, device=device) for _ in self.layers]

    def prefill(self, x: torch.Tensor, counts: torch.Tensor, cache: list[torch.Tensor]) -> torch.Tensor:
        """x [B, P, dim] -> [B, P, dim]; each layer's state is taken after counts[b] patches."""
        mixers = {name: layer.mixer for name, layer in self.layers.items()}
        with capture_inputs(mixers) as seen:
            out = self(x)
        rows = torch.arange(x.shape[0], device=x.device)
        for state, name in zip(cache, self.layers):
            h = self.layers[name].mixer.states(seen[name])[rows, (counts - 1).clamp(min=0)]
            state.copy_(torch.where((counts > 0)[:, None], h, torch.zeros_like(h)))
        return out

    def step(self, x: torch.Tensor, cache: list[torch.Tensor], active: torch.Tensor,
             bound: int | None = None) -> torch.Tensor:
        """One patch per row; `bound` (how many patches a step may read) does not apply to a
        fixed-size state."""
        for state, layer in zip(cache, self.layers.values()):
            x = x + layer.mixer.step(layer.mixer_norm(x), state, active)
            x = x + layer.feed_forward(layer.ffn_norm(x))
        return self.norm(x) if self.norm is not None else x

    def init_weights(self) -> None:
        init_children(self)  # every layer, then the final norm

    def forward_flops(self, seq_len: int, patch_len: float) -> float:
        """Forward FLOPs per patch with P = seq_len / patch_len patches in the sequence: 2 per
        weight of the five linears plus the scan's ~3 * log2(P) multiply-adds per channel."""
        context = seq_len / patch_len
        d, h = self.cfg.dim, self.cfg.hidden_dim
        matmul = 2.0 * (4 * d * d + 3 * d * h)
        scan = 3.0 * d * max(1.0, math.ceil(math.log2(max(context, 2.0))))
        return self.cfg.n_layers * (matmul + scan)
