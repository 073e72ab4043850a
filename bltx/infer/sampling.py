"""Next-byte sampling: greedy, temperature, top-k and top-p (nucleus), batched.

All rules act on logits [B, V] and return ids [B]. Special ids (< OFFSET) other than EOS are
never sampled: the model should only emit bytes or end the text.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from bltx.bytes import EOS_ID, OFFSET
from bltx.checks import check_sampling


@dataclass
class SamplingConfig:
    temperature: float = 0.0  # 0 means greedy
    top_k: int = 0  # 0 means no top-k cut
    top_p: float = 1.0  # 1 means no nucleus cut
    allow_eos: bool = True

    def __post_init__(self):
        check_sampling(self.temperature, self.top_k, self.top_p)


def mask_special(logits: torch.Tensor, allow_eos: bool) -> torch.Tensor:
    banned = torch.zeros(logits.shape[-1], dtype=torch.bool, device=logits.device)
    banned[:OFFSET] = True
    if allow_eos:
        banned[EOS_ID] = False
    return logits.masked_fill(banned, float("-inf"))


def sample_next(
    logits: torch.Tensor, cfg: SamplingConfig, generator: torch.Generator | None = None
) -> torch.Tensor:
    """logits [B, V] (float) -> next ids [B] (long)."""
    logits = mask_special(logits.float(), cfg.allow_eos)
    if cfg.temperature == 0.0:
        return logits.argmax(dim=-1)
    return torch.multinomial(sampling_probs(logits, cfg), 1, generator=generator).squeeze(-1)


def sampling_probs(logits: torch.Tensor, cfg: SamplingConfig) -> torch.Tensor:
    """The distribution sample_next draws from (temperature > 0), logits [B, V] -> [B, V];
    speculative decoding compares these of the draft and the model."""
    logits = mask_special(logits.float(), cfg.allow_eos) / cfg.temperature
    if cfg.top_k > 0:
        k = min(cfg.top_k, logits.shape[-1])
        kth = logits.topk(k, dim=-1).values[:, -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if cfg.top_p < 1.0:
        sorted_logits, order = logits.sort(dim=-1, descending=True)
        probs = sorted_logits.softmax(dim=-1)
        # Drop a token when the mass before it already reaches top_p (keeps at least one).
        drop_sorted = probs.cumsum(dim=-1) - probs >= cfg.top_p
        drop = torch.zeros_like(drop_sorted).scatter(-1, order, drop_sorted)
        logits = logits.masked_fill(drop, float("-inf"))
    return logits.softmax(dim=-1)
