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
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from bltx.checks import at_least, finite, require
from bltx.model.init import init_linear, local_part
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


@torch.no_grad()
def fill_identity(weight: torch.Tensor) -> None:
    """weight := I, each rank writing the part it holds: under FSDP / TP the weight is a
    DTensor, into which a full tensor cannot be copied."""
    local, offset, _ = local_part(weight)
    rows = torch.arange(local.shape[0], device=local.device) + offset[0]
    cols = torch.arange(local.shape[1], device=local.device) + offset[1]
    local.copy_((rows[:, None] == cols[None, :]).to(local.dtype))


def gather_rows(x: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """x [B, N, d], index [B, M] -> x[b, index[b, m]] as [B, M, d]."""
    return x.gather(1, index.unsqueeze(-1).expand(*index.shape, x.shape[-1]))


def boundary_probability(q: torch.Tensor, k_prev: torch.Tensor) -> torch.Tensor:
    """p_t = (1 - cos(q_t, k_{t-1})) / 2, one definition for the forward and the cached step
    (they must agree exactly for cached generation to equal recomputation)."""
    cos = F.cosine_similarity(q, k_prev, dim=-1, eps=1e-6)
    return ((1.0 - cos) * 0.5).clamp(0.0, 1.0)


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
            require(finite(self.target_length) and self.target_length > 1.0, "target_length", self.target_length,
                    "must be a finite number > 1 (mean bytes per chunk)")
            at_least("ratio_loss_weight", float(self.ratio_loss_weight), 0.0)

    def __init__(self, cfg: Config, dim: int, latent_dim: int, **context):
        super().__init__()
        self.cfg = cfg
        self.dim = dim
        self.latent_dim = latent_dim
        self.target_length = cfg.target_length
        self.wq = nn.Linear(dim, dim, bias=False)
        self.wk = nn.Linear(dim, dim, bias=False)
        # Chunk state (latent width) -> byte residual stream (local width).
        self.up = nn.Linear(latent_dim, dim, bias=False)
        # The mean of a scalar over the data-parallel ranks (set by whoever shards the batch,
        # e.g. a functional all-reduce over the dp mesh; None: this process holds the whole
        # batch). The ratio loss is linear in G given F,
        # so with the global F in it, the mean of the ranks' losses (and their gradients) is
        # the whole batch's; with each rank's own F it is not.
        self.batch_mean: Callable[[torch.Tensor], torch.Tensor] | None = None

    def probabilities(self, h: torch.Tensor) -> torch.Tensor:
        """Boundary probabilities p [B, T] (float32) from encoder states h [B, T, dim]."""
        q = self.wq(h).float()
        k = self.wk(h).float()
        p = boundary_probability(q[:, 1:], k[:, :-1])
        return F.pad(p, (1, 0), value=1.0)  # the first byte always opens a chunk

    def dechunk(self, zhat: torch.Tensor, p: torch.Tensor, starts: torch.Tensor,
                patch_ids: torch.Tensor, first: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(z [B, P, latent_dim] smoothed chunk states, u [B, T, dim] what each byte adds to
        its residual stream). `first` [B, P]: each chunk's first byte."""
        z, u, _, _ = self.dechunk_parts(zhat, p, starts, patch_ids, first)
        return z, u

    def dechunk_parts(self, zhat, p, starts, patch_ids, first):
        """`dechunk` and what a generation cache keeps of it: (z, u, the fp32 EMA states,
        their up-projections [B, P, dim])."""
        z32 = self.smooth(zhat, p.gather(1, first).unsqueeze(-1))
        z = z32.to(zhat.dtype)
        per_chunk = self.up(z)
        return z, self.upsample(per_chunk, p, starts, patch_ids), z32, per_chunk

    def smooth(self, zhat: torch.Tensor, p_chunk: torch.Tensor) -> torch.Tensor:
        """The EMA over chunks, fp32 [B, P, latent_dim]; p_chunk [B, P, 1] is each chunk's
        opening probability (padding chunks read p_0 = 1). A linear scan in fp32: the
        product of gates must not underflow."""
        return linear_scan((1.0 - p_chunk).expand_as(zhat), p_chunk * zhat.float())

    def upsample(self, per_chunk: torch.Tensor, p: torch.Tensor, starts: torch.Tensor,
                 patch_ids: torch.Tensor) -> torch.Tensor:
        """Each byte reads its chunk's projected state (per_chunk [B, P, dim], projected once
        per chunk, then copied to the chunk's bytes), scaled by STE(c_t)."""
        conf = torch.where(starts, p, 1.0 - p)
        rows = gather_rows(per_chunk, patch_ids.clamp(max=per_chunk.shape[1] - 1))
        return rows * ste(conf).unsqueeze(-1).to(per_chunk.dtype)

    def aux(self, p: torch.Tensor, starts: torch.Tensor) -> tuple[dict, dict]:
        """(aux losses, statistics) of one forward: the weighted ratio loss; F and G."""
        rate = starts.float().mean()
        prob = p.mean()
        # Training forwards only: every rank runs those in step (a collective is safe there),
        # and only they use the loss; an evaluation or generation forward may run on one rank.
        global_rate = self.batch_mean is not None and self.training
        batch_rate = self.batch_mean(rate.detach()) if global_rate else rate
        loss = ratio_loss(batch_rate, prob, self.cfg.target_length)
        return ({"ratio_loss": self.cfg.ratio_loss_weight * loss},
                {"boundary_rate": rate.detach(), "boundary_prob": prob.detach()})

    # -- cached generation (bltx/model/cache.py) ----------------------------------------------
    # Per row: the last byte's key (p_t reads it), the chunks opened so far (the cap), the open
    # chunk's EMA state (fp32, as the scan keeps it) and its up-projection, and the last
    # byte's p and decision (its confidence scales what it reads). Per byte:
    #     opens = chunker.step(h, c)          # route the new byte
    #     z = chunker.merge(zhat, opens, c)   # rows that opened a chunk: the latent's output in
    #     u = chunker.upsample_step(c)        # what the byte adds to its residual stream

    def init_cache(self, batch: int, capacity: int) -> dict:
        like = self.up.weight
        f32 = dict(dtype=torch.float32, device=like.device)
        return {"key": torch.zeros(batch, self.dim, **f32), "p": torch.ones(batch, **f32),
                "opens": torch.ones(batch, dtype=torch.bool, device=like.device),
                "chunks": torch.zeros(batch, dtype=torch.long, device=like.device),
                "z": torch.zeros(batch, self.latent_dim, **f32),
                "up": torch.zeros(batch, self.dim, dtype=like.dtype, device=like.device), "max_chunks": None}

    def prefill(self, h: torch.Tensor, lengths: torch.Tensor, max_chunks: int | None,
                cache: dict) -> tuple[torch.Tensor, torch.Tensor]:
        """Right-padded byte states h [B, T, dim] -> (p [B, T], starts [B, T]) as the model's
        forward decides them (at most `max_chunks` per row, None: no cap)."""
        T = h.shape[1]
        p = self.probabilities(h)
        starts = cap_starts(p >= 0.5, max_chunks or T)
        last = (lengths - 1)[:, None]
        cache["key"].copy_(self.wk(gather_rows(h, last)[:, 0]).float())  # the last prompt byte's key only
        cache["chunks"].copy_((starts & (torch.arange(T, device=h.device)[None] <= last)).sum(-1))
        cache["max_chunks"] = max_chunks
        return p, starts

    def prefill_dechunk(self, zhat, p, starts, patch_ids, first, counts: torch.Tensor, cache: dict):
        """`dechunk` over the prompt; keeps each row's state after its counts[b] chunks."""
        z, u, z32, per_chunk = self.dechunk_parts(zhat, p, starts, patch_ids, first)
        last = (counts - 1).clamp(min=0)[:, None]
        cache["z"].copy_(gather_rows(z32, last)[:, 0])
        cache["up"].copy_(gather_rows(per_chunk, last)[:, 0])
        return z, u

    def step(self, h: torch.Tensor, cache: dict) -> torch.Tensor:
        """The new byte's state h [B, 1, dim] -> whether it opens a chunk, [B] bool."""
        q, k = self.wq(h[:, 0]).float(), self.wk(h[:, 0]).float()
        p = boundary_probability(q, cache["key"])
        opens = p >= 0.5
        if cache["max_chunks"] is not None:  # cap_starts: once max_chunks are open, no more
            opens = opens & (cache["chunks"] < cache["max_chunks"])
        cache["key"].copy_(k)
        cache["p"].copy_(p)
        cache["opens"].copy_(opens)
        cache["chunks"].add_(opens.long())
        return opens

    def merge(self, zhat: torch.Tensor, opens: torch.Tensor, cache: dict) -> torch.Tensor:
        """Rows `opens` take the latent's output zhat [B, 1, latent_dim] into the EMA (one
        step of `smooth`'s recurrence) -> the smoothed state z [B, 1, latent_dim]."""
        p = cache["p"][:, None]
        z32 = torch.where(opens[:, None], (1.0 - p) * cache["z"] + p * zhat[:, 0].float(), cache["z"])
        cache["z"].copy_(z32)
        z = z32.to(zhat.dtype)
        cache["up"].copy_(torch.where(opens[:, None], self.up(z), cache["up"]))
        return z[:, None]

    def upsample_step(self, cache: dict) -> torch.Tensor:
        """What the last stepped byte adds to its residual stream, [B, 1, dim]."""
        up = cache["up"][:, None]
        zeros = torch.zeros_like(cache["chunks"])[:, None]  # each row reads its one open chunk
        return self.upsample(up, cache["p"][:, None], cache["opens"][:, None], zeros)

    def init_weights(self) -> None:
        # Zero: the decoder starts from the encoder's byte states alone (plus its own
        # cross-attention to the chunk), as in BLT; random chunk vectors added to every byte
        # held a tiny model at the unigram loss for ~80 steps. `up` gets gradients at once
        # (dL/du times z), and the STE's gradient into the router grows with it.
        nn.init.zeros_(self.up.weight)
        if self.cfg.identity_init:
            fill_identity(self.wq.weight)
            fill_identity(self.wk.weight)
        else:
            init_linear(self.wq)
            init_linear(self.wk)

    def forward_flops(self, seq_len: int, patch_len: float) -> float:
        """Forward FLOPs per byte: W_q and W_k on every byte, the up-projection per chunk.
        Cosine, EMA and the confidence scale are elementwise (not counted, flop_math.py)."""
        return 2.0 * 2 * self.dim * self.dim + 2.0 * self.latent_dim * self.dim / patch_len
