"""Bits per byte (bpb) and patch statistics of a model over batches of byte windows.

bpb = (sum of next-id negative log-likelihoods, in bits) / (number of predicted real bytes).
Special targets (EOS, BOS) add their cost to the numerator but are not counted as bytes, so
bpb is the cost of the text itself, comparable across patchers and tokenizer-free models.

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

from bltx.bytes import IGNORE_ID, OFFSET
from bltx.precision import resolved_dtype


def autocast_context(device: torch.device, dtype: str):
    """bf16 autocast on CPU or GPU when `dtype` is (or "auto" resolves to) bfloat16."""
    if resolved_dtype(dtype, device) == "bfloat16":
        return torch.autocast(device_type=device.type, dtype=torch.bfloat16)
    return nullcontext()


def next_byte_nll(logits: torch.Tensor, targets: torch.Tensor, reduction: str = "mean") -> torch.Tensor:
    """Cross-entropy in nats, computed in float32 whatever the logits' dtype; IGNORE_ID
    targets cost nothing (and the mean is over the others)."""
    return F.cross_entropy(logits.float().reshape(-1, logits.shape[-1]), targets.reshape(-1),
                           reduction=reduction, ignore_index=IGNORE_ID)


@dataclass
class BpbResult:
    """Totals of an evaluation; `bpb`, `loss` and `mean_patch_length` derive from them."""

    nll_nats: float
    targets: int
    bytes: int
    patches: int  # 0 when the model does not patch

    @property
    def bpb(self) -> float:
        return self.nll_nats / math.log(2) / max(1, self.bytes)

    @property
    def loss(self) -> float:
        return self.nll_nats / max(1, self.targets)

    @property
    def mean_patch_length(self) -> float:
        return self.targets / self.patches if self.patches else float("nan")

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
    totals = torch.zeros(4, dtype=torch.float64, device=device)  # nll, targets, bytes, patches
    try:
        for batch in batches:
            ids = batch["ids"].to(device)
            targets = batch["targets"].to(device)
            ent = batch.get("entropies")
            with autocast_context(device, dtype):
                out = model(ids, targets, entropies=None if ent is None else ent.to(device))
            totals[0] += out.nll.double()
            totals[1] += targets.numel()
            totals[2] += (targets >= OFFSET).sum()
            if out.starts is not None:
                totals[3] += out.starts.sum()
    finally:
        model.train(was_training)
    nll, n_targets, n_bytes, n_patches = reduce_sum(totals).tolist()
    return BpbResult(nll, int(n_targets), int(n_bytes), int(n_patches))
