"""Learned (H-Net style) dynamic chunking: a router that decides chunk boundaries from the
encoder's byte states, and the dechunker that brings the latent's chunk outputs back to bytes.

Facts from H-Net (Hwang, Wang, Gu 2025, arXiv 2507.07955); the code is bltx's own.

Routing: q_t = W_q h_t, k_t = W_k h_t, p_t = (1 - cos(q_t, k_{t-1})) / 2, p_0 = 1; byte t opens
a chunk when p_t >= 0.5. A boundary at t reads h_t and h_{t-1} only, and h is causal, so it
depends on bytes <= t.

Dechunking: the latent outputs zhat_c (one per chunk) are smoothed by an EMA over chunks
weighted by the opening byte's probability, z_c = P_c zhat_c + (1 - P_c) z_{c-1}, so an
unsure boundary mixes in the previous chunk; each byte reads the chunk it belongs to, scaled by
the straight-through confidence STE(c_t) with c_t = p_t if b_t else 1 - p_t. STE(c) is 1 in the
forward pass and carries dL/dc into the router in the backward pass: the discrete boundary
decision gets a gradient from the language-model loss.

Ratio loss: L = N/(N-1) ((N-1) F G + (1 - F)(1 - G)), F the fraction of bytes that open a
chunk, G the mean p, N the target bytes per chunk; its minimum (1) is at F = G = 1/N.

Static shapes: the chunk axis is padded to a static P (compile); a sequence never has more
than P chunks (`cap_starts`: once P chunks are open, the last runs to the end), a rule that
reads earlier bytes only, so it keeps causality and makes eager and compiled forwards agree.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from bltx.model.init import init_linear
from bltx.model.recurrent_latent import linear_scan
from bltx.registry import register


def ratio_loss(boundary_rate: torch.Tensor, boundary_prob: torch.Tensor, target: float) -> torch.Tensor:
    """H-Net's compression loss; 1 at F = G = 1/N, larger elsewhere (F, G scalars)."""
    n = float(target)
    return n / (n - 1.0) * ((n - 1.0) * boundary_rate * boundary_prob + (1 - boundary_rate) * (1 - boundary_prob))


def ste(c: torch.Tensor) -> torch.Tensor:
    """Straight-through estimator: the value 1, the gradient of c."""
    return c + (1.0 - c).detach()


def cap_starts(starts: torch.Tensor, max_chunks: int) -> torch.Tensor:
    """Force a chunk at byte 0 and keep at most `max_chunks` per row (later starts dropped)."""
    starts = starts.clone()
    starts[:, 0] = True
    return starts & (starts.long().cumsum(-1) <= max_chunks)


def chunk_start_positions(patch_ids: torch.Tensor, num_chunks: int) -> torch.Tensor:
    """Position of each chunk's first byte, [B, P] (padding chunks: position 0)."""
    B, T = patch_ids.shape
    pos = torch.arange(T, device=patch_ids.device).expand(B, T)
    idx = torch.where(patch_ids < num_chunks, patch_ids, num_chunks)  # bytes past P: dump row
    first = torch.full((B, num_chunks + 1), T, dtype=torch.long, device=patch_ids.device)
    first = first.scatter_reduce(1, idx, pos, reduce="amin", include_self=True)[:, :num_chunks]
    return torch.where(first < T, first, torch.zeros_like(first))


def gather_rows(x: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """x [B, N, d], index [B, M] -> x[b, index[b, m]] as [B, M, d]."""
    return x.gather(1, index.unsqueeze(-1).expand(*index.shape, x.shape[-1]))


@register("chunker", "cosine")
class CosineRouter(nn.Module):
    """H-Net's routing module and dechunker (see module doc).

    Context: `dim` (width of the encoder's byte states), `latent_dim`.
    """

    @dataclass
    class Config:
        # N: target bytes per chunk, the ratio loss's optimum.
        target_length: float = 4.0
        # Weight of the ratio loss in the training loss (H-Net uses 0.03).
        ratio_loss_weight: float = 0.03
        # Initialise W_q and W_k to the identity (H-Net): at start p compares consecutive
        # encoder states directly, so boundaries mean something before training.
        identity_init: bool = True

        def __post_init__(self):
            if self.target_length <= 1.0:
                raise ValueError(f"target_length must be > 1, got {self.target_length}")
            if self.ratio_loss_weight < 0:
                raise ValueError(f"ratio_loss_weight must be >= 0, got {self.ratio_loss_weight}")

    def __init__(self, cfg: Config, dim: int, latent_dim: int, **context):
        super().__init__()
        self.cfg = cfg
        self.dim = dim
        self.latent_dim = latent_dim
        self.wq = nn.Linear(dim, dim, bias=False)
        self.wk = nn.Linear(dim, dim, bias=False)
        # Chunk state (latent width) -> byte residual stream (local width).
        self.up = nn.Linear(latent_dim, dim, bias=False)

    def probabilities(self, h: torch.Tensor) -> torch.Tensor:
        """Boundary probabilities p [B, T] (float32) from encoder states h [B, T, dim]."""
        q = self.wq(h).float()
        k = self.wk(h).float()
        cos = F.cosine_similarity(q[:, 1:], k[:, :-1], dim=-1, eps=1e-6)
        p = ((1.0 - cos) * 0.5).clamp(0.0, 1.0)
        return F.pad(p, (1, 0), value=1.0)  # the first byte always opens a chunk

    def dechunk(self, zhat: torch.Tensor, p: torch.Tensor, starts: torch.Tensor,
                patch_ids: torch.Tensor, first: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(z [B, P, latent_dim] smoothed chunk states, u [B, T, dim] what each byte adds to
        its residual stream). `first` [B, P]: each chunk's first byte."""
        P = zhat.shape[1]
        p_chunk = p.gather(1, first).unsqueeze(-1)  # [B, P, 1]; padding chunks read p_0 = 1
        # EMA as a linear scan over chunks (fp32: the product of gates must not underflow).
        z = linear_scan((1.0 - p_chunk).expand_as(zhat), p_chunk * zhat.float()).to(zhat.dtype)
        conf = torch.where(starts, p, 1.0 - p)
        per_chunk = self.up(z)  # project per chunk, then copy to the chunk's bytes
        u = gather_rows(per_chunk, patch_ids.clamp(max=P - 1)) * ste(conf).unsqueeze(-1).to(per_chunk.dtype)
        return z, u

    def aux(self, p: torch.Tensor, starts: torch.Tensor) -> tuple[dict, dict]:
        """(aux losses, statistics) of one forward: the weighted ratio loss; F and G."""
        rate = starts.float().mean()
        prob = p.mean()
        loss = ratio_loss(rate, prob, self.cfg.target_length)
        return ({"ratio_loss": self.cfg.ratio_loss_weight * loss},
                {"boundary_rate": rate.detach(), "boundary_prob": prob.detach()})

    def init_weights(self) -> None:
        # Zero: the decoder starts from the encoder's byte states alone (plus its own
        # cross-attention to the chunk), as in BLT; random chunk vectors added to every byte
        # held a tiny model at the unigram loss for ~80 steps. `up` gets gradients at once
        # (dL/du times z), and the STE's gradient into the router grows with it.
        nn.init.zeros_(self.up.weight)
        if self.cfg.identity_init:
            with torch.no_grad():
                self.wq.weight.copy_(torch.eye(self.dim, device=self.wq.weight.device))
                self.wk.weight.copy_(torch.eye(self.dim, device=self.wk.weight.device))
        else:
            init_linear(self.wq)
            init_linear(self.wk)

    def forward_flops(self, seq_len: int, patch_len: float) -> float:
        """Forward FLOPs per byte: W_q and W_k on every byte, the up-projection per chunk.
        Cosine, EMA and the confidence scale are elementwise (not counted, flop_math.py)."""
        return 2.0 * 2 * self.dim * self.dim + 2.0 * self.latent_dim * self.dim / patch_len
