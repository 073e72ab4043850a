"""Entropy patching: a small byte LM's next-byte entropies decide where patches begin.

H(x_t), the entropy of the model's prediction *of* byte t, is the entropy of the
distribution produced at position t-1: `entropies[:, t-1]`. Rules (BLT section 2.3), chosen by
`rule`, open a patch at t >= 2 when:
  - global threshold:  H(x_t) > threshold                      (entropies[t-1] > threshold)
  - monotonic:         H(x_t) - H(x_{t-1}) > relative_threshold
Positions 0 and 1 always start patches (BOS is a patch of its own), as in the released BLT
and HF's `patch_lengths_from_entropies`. starts[t] depends on ids[:t] only, so whether the
*next* byte opens a patch is known before it is seen (`predicts_next_start`): the BLT
decoder uses that to let the last byte of a patch read that patch's latent state.

The entropy model is frozen (requires_grad False, always eval) and run without grad.
"""

from __future__ import annotations

import os

from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F

from bltx.checks import at_least, finite, require
from bltx.errors import CheckpointError
from bltx.model.attention import attention_backend, check_backend_name
from bltx.model.entropy_model import entropy_from_logits
from bltx.patching.base import Patcher
from bltx.protocols import missing_cached
from bltx.registry import build, register
from bltx.schema import component
from bltx.checkpoint import load_exactly, load_model_state


def starts_from_entropies(
    entropies: torch.Tensor, threshold: float | None, relative_threshold: float | None
) -> torch.Tensor:
    """entropies [B, T] -> starts bool [B, T] (positions 0 and 1 always True)."""
    prev = F.pad(entropies[:, :-1], (1, 0))  # prev[t] = entropies[t-1] = H(x_t)
    starts = torch.zeros_like(entropies, dtype=torch.bool)
    if threshold is not None:
        starts = starts | (prev > threshold)
    if relative_threshold is not None:
        prev2 = F.pad(entropies[:, :-2], (2, 0))  # H(x_{t-1})
        starts = starts | (prev - prev2 > relative_threshold)
    pos = torch.arange(entropies.shape[1], device=entropies.device)
    return starts | (pos < 2)


@register("patcher", "entropy")
class EntropyPatcher(Patcher):
    """Patches from a frozen entropy model (realtime) or from precomputed entropies."""

    predicts_next_start = True

    @dataclass
    class Config:
        model: dict = component("entropy_model", {"type": "transformer"})
        # Entropy model weights: a torch.save'd state dict (optionally under "model" or with
        # an "entropy_model." prefix); None keeps the random/converted weights.
        checkpoint: str | None = None
        # "global": H(x_t) > threshold; "monotonic": H(x_t) - H(x_{t-1}) > relative_threshold.
        rule: Literal["global", "monotonic"] = "global"
        threshold: float = 1.335442066192627  # HF BltConfig.patching_threshold
        relative_threshold: float | None = None
        max_patch_length: int | None = None
        attention: str = "sdpa"

        def __post_init__(self):
            # NaN compares false with every entropy: no byte would ever open a patch.
            require(finite(self.threshold), "threshold", self.threshold, "must be a finite number")
            if self.relative_threshold is not None:
                require(finite(self.relative_threshold), "relative_threshold", self.relative_threshold,
                        "must be a finite number")
            require(self.rule != "monotonic" or self.relative_threshold is not None, "rule", self.rule,
                    "needs relative_threshold")
            if self.max_patch_length is not None:
                at_least("max_patch_length", self.max_patch_length, 1, " (or unset)")
            check_backend_name(self.attention)

    def __init__(self, cfg: Config, **context):
        super().__init__(max_patch_length=cfg.max_patch_length)
        self.cfg = cfg
        self.threshold = cfg.threshold if cfg.rule == "global" else None
        self.relative_threshold = cfg.relative_threshold if cfg.rule == "monotonic" else None
        backend = attention_backend(cfg.attention, where="patcher.attention")
        self.entropy_model = build("entropy_model", cfg.model, where="patcher.model", backend=backend)
        self.entropy_model.requires_grad_(False)
        self.entropy_model.eval()
        if not any(p.is_meta for p in self.entropy_model.parameters()):
            self.init_weights()  # a meta-device build is initialised later by the caller

    def train(self, mode: bool = True):
        super().train(mode)
        self.entropy_model.eval()  # frozen: never in training mode
        return self

    @torch.no_grad()
    def entropies(self, ids: torch.Tensor) -> torch.Tensor:
        """[B, T] fp32 entropy of the entropy model's prediction made at each position."""
        return self.entropy_model.entropies(ids)

    def compute_starts(self, ids: torch.Tensor, entropies: torch.Tensor | None = None) -> torch.Tensor:
        if entropies is None:
            entropies = self.entropies(ids)
        return starts_from_entropies(entropies.detach(), self.threshold, self.relative_threshold)

    # -- online patching (bltx/patching/base.py): the entropy model steps with its own cache;
    # its logits stay in the state, where speculative decoding reads them as the draft.

    @property
    def online_steps(self) -> bool:
        return not missing_cached(self.entropy_model, "entropy_model")

    def _online_init(self, state, batch, capacity, device):
        if not self.online_steps:
            return super()._online_init(state, batch, capacity, device)
        state.extra["cache"] = self.entropy_model.init_cache(batch, capacity)
        state.extra["entropy"] = torch.zeros(batch, device=device)

    def _online_prefill(self, ids, lengths, state):
        if not self.online_steps:
            return super()._online_prefill(ids, lengths, state)
        logits = self.entropy_model.prefill(ids, lengths, state.extra["cache"])
        ent = entropy_from_logits(logits)
        rows = torch.arange(ids.shape[0], device=ids.device)
        state.extra["entropy"].copy_(ent[rows, lengths - 1])
        state.extra["logits"] = logits[rows, lengths - 1]
        return starts_from_entropies(F.pad(ent, (0, 1)), self.threshold, self.relative_threshold)

    def _online_step(self, ids, state):
        if not self.online_steps:
            return super()._online_step(ids, state)
        logits = self.entropy_model.step(ids[:, None], state.extra["cache"])[:, 0]
        state.extra["logits"] = logits
        ent, before = entropy_from_logits(logits), state.extra["entropy"]
        opens = state.pos + 1 < 2  # positions 0 and 1 always open
        if self.threshold is not None:
            opens = opens | (ent > self.threshold)
        if self.relative_threshold is not None:
            opens = opens | (ent - before > self.relative_threshold)
        before.copy_(ent)
        return opens

    def forward_flops(self, seq_len: int, patch_len: float) -> float:
        """The entropy model's forward FLOPs per byte (it runs over every byte)."""
        return self.entropy_model.forward_flops(seq_len, patch_len)

    def init_weights(self) -> None:
        self.entropy_model.init_weights()
        if self.cfg.checkpoint is not None:
            self.load_checkpoint(self.cfg.checkpoint)

    def load_checkpoint(self, path: str) -> None:
        """Load entropy model weights (see Config.checkpoint): a `.pt` state dict, a training
        checkpoint folder or run folder of an `entropy_lm` model, or `bltx:NAME` for a file
        bundled with bltx. Keys may carry an "entropy_model." or "patcher.entropy_model."
        prefix (an entropy_lm run, a whole BLT)."""
        if not str(path).startswith("bltx:") and not os.path.exists(path):
            raise CheckpointError(
                f"patcher.checkpoint: entropy model weights not found at {path} "
                f"(relative paths start at the working folder; bundled files are bltx:NAME)"
            )
        state = load_model_state(path)
        for prefix in ("patcher.entropy_model.", "entropy_model."):
            if any(k.startswith(prefix) for k in state):
                state = {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}
                break
        load_exactly(self.entropy_model, state, f"patcher.checkpoint {path}", "the entropy model",
                     "model.patcher.model", "; set model.patcher.model to the settings it was trained with")
