"""Bits per byte (bpb) and patch statistics of a model over batches of byte windows.

bpb = (sum of next-id negative log-likelihoods, in bits) / (number of predicted real bytes).
Special targets (EOS, BOS) add their cost to the numerator but are not counted as bytes, so
bpb is the cost of the text itself, comparable across patchers and tokenizer-free models.
Targets equal to IGNORE_ID (bltx/bytes.py: prompt bytes of fine-tuning data, padding) are
not scored at all; `scored_targets` / `byte_targets` say which count, everywhere.

Every model is called the same way, `model(ids, targets, entropies=...)`, and returns a
ModelOutput (bltx/model/output.py) whose `nll` is the summed NLL in nats and whose `starts`
(None for a model that does not patch) give the patch count; how a model patches or scores
(a BPE LM over tokens, learned chunking) is its own business.
"""

from __future__ import annotations

import math
from contextlib import nullcontext
from dataclasses import astuple, dataclass
from typing import Callable, Iterable

import torch
import torch.nn.functional as F

from bltx.bytes import IGNORE_ID, byte_targets, scored_targets
from bltx.precision import resolved_dtype


def autocast_context(device: torch.device, dtype: str):
    """bf16 autocast on CPU or GPU when `dtype` is (or "auto" resolves to) bfloat16."""
    if resolved_dtype(dtype, device) == "bfloat16":
        return torch.autocast(device_type=device.type, dtype=torch.bfloat16)
    return nullcontext()


def next_byte_nll(logits: torch.Tensor, targets: torch.Tensor, reduction: str = "mean") -> torch.Tensor:
    """Cross-entropy in nats, computed in float32 whatever the logits' dtype; targets equal
    to IGNORE_ID cost nothing (a "mean" is over the scored targets only)."""
    return F.cross_entropy(logits.float().reshape(-1, logits.shape[-1]), targets.reshape(-1), reduction=reduction,
                           ignore_index=IGNORE_ID)


@dataclass
class BpbResult:
    """Totals of an evaluation; `bpb`, `loss` and `mean_patch_length` derive from them."""

    nll_nats: float
    targets: int
    bytes: int
    patches: int  # 0 when the model does not patch
    positions: int = 0  # input bytes read (0: as many as targets), the patch length's numerator

    @property
    def bpb(self) -> float:
        return self.nll_nats / math.log(2) / max(1, self.bytes)

    @property
    def loss(self) -> float:
        return self.nll_nats / max(1, self.targets)

    @property
    def mean_patch_length(self) -> float:
        return (self.positions or self.targets) / self.patches if self.patches else float("nan")

    def __add__(self, other: "BpbResult") -> "BpbResult":
        """Totals of two evaluations (validation sources) together."""
        return BpbResult(*(a + b for a, b in zip(astuple(self), astuple(other))))

    def scalars(self) -> dict[str, float]:
        out = {"loss": self.loss, "bpb": self.bpb}
        if self.patches:
            out["mean_patch_length"] = self.mean_patch_length
        return out


@torch.no_grad()
def evaluate_bpb(
    model: torch.nn.Module,
    batches: Iterable[dict[str, torch.Tensor]],
    device: torch.device,
    dtype: str = "float32",
    reduce_sum: Callable[[torch.Tensor], torch.Tensor] = lambda t: t,
) -> BpbResult:
    """bpb of `model` over `batches` ({"ids", "targets", optional "entropies"}).

    `reduce_sum` sums a tensor over data-parallel ranks (identity on one process), so each
    rank may evaluate its own share of the batches.
    """
    was_training = model.training
    model.eval()
    totals = torch.zeros(5, dtype=torch.float64, device=device)  # nll, targets, bytes, patches, positions
    try:
        for batch in batches:
            ids = batch["ids"].to(device)
            targets = batch["targets"].to(device)
            ent, docs = batch.get("entropies"), batch.get("doc_ids")
            with autocast_context(device, dtype):
                docs = {} if docs is None else {"doc_ids": docs.to(device)}
                out = model(ids, targets, entropies=None if ent is None else ent.to(device), **docs)
            totals[0] += out.nll.double()
            totals[1] += scored_targets(targets).sum()
            totals[2] += byte_targets(targets).sum()
            if out.starts is not None:
                totals[3] += out.starts.sum()
            totals[4] += targets.numel()
    finally:
        model.train(was_training)
    nll, n_targets, n_bytes, n_patches, n_positions = reduce_sum(totals).tolist()
    return BpbResult(nll, int(n_targets), int(n_bytes), int(n_patches), int(n_positions))
