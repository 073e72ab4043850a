"""What a model's forward returns: the one value the engine reads from a model.

    out = model(ids)                  # out.logits [B, T, V]: next-id logits
    out = model(ids, targets)         # out.nll: summed next-id NLL in nats (logits not kept)
    out.starts                        # bool [B, T] patch/chunk/token starts it used, or None
    out.aux_losses, out.stats         # {name: scalar tensor} or None: added to the loss / logged

Everything training, evaluation and the tools need comes back as this value, never through
attributes written on a module inside forward: `torch.compile`, activation checkpointing and
FSDP see returned tensors only. A NamedTuple, so pytree-based wrappers (FSDP2's hooks,
dynamo) walk into it. A model whose loss is not next-byte cross-entropy (a BPE-token LM, a
distillation objective) returns its own `nll` here; the engine never asks how it was made.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F

from bltx.bytes import IGNORE_ID


class ModelOutput(NamedTuple):
    logits: torch.Tensor | None = None
    nll: torch.Tensor | None = None
    starts: torch.Tensor | None = None
    aux_losses: dict[str, torch.Tensor] | None = None
    stats: dict[str, torch.Tensor] | None = None


def next_id_nll(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Summed cross-entropy in nats, in float32 whatever the logits' dtype; targets equal to
    IGNORE_ID (bytes not trained on) cost nothing."""
    return F.cross_entropy(logits.float().reshape(-1, logits.shape[-1]), targets.reshape(-1),
                           reduction="sum", ignore_index=IGNORE_ID)


def keep_only(logits: torch.Tensor, allowed: torch.Tensor) -> torch.Tensor:
    """logits [..., V] with the ids `allowed` (bool [..., V]) does not hold at the lowest
    float: probability 0 under softmax, finite so no NaN reaches a gradient."""
    return logits.masked_fill(~allowed, torch.finfo(logits.dtype).min)


def lm_output(logits: torch.Tensor, targets: torch.Tensor | None, **extra) -> ModelOutput:
    """The output of a next-id model: its logits, or with `targets` their summed NLL only
    (the logits are not kept, so training holds no second [B, T, V] tensor)."""
    if targets is None:
        return ModelOutput(logits=logits, **extra)
    return ModelOutput(nll=next_id_nll(logits, targets), **extra)
