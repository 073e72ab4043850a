"""Bits per byte (bpb) and patch statistics of a model over batches of byte windows.

bpb = (sum of next-id negative log-likelihoods, in bits) / (number of predicted real bytes).
Special targets (EOS, BOS) add their cost to the numerator but are not counted as bytes, so
bpb is the cost of the text itself, comparable across patchers and tokenizer-free models.
Targets equal to IGNORE_ID (bltx/bytes.py: prompt bytes of fine-tuning data, padding) are
not scored at all; `scored_targets` / `byte_targets` say which count, everywhere.

`model_forward` is the one place that knows how to call a model: a model with the `patches`
capability (bltx/protocols.py; BLT) is patched first so the caller can count patches, then
run with those starts; any other model (e.g. the entropy LM) is just called on the ids.
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
from bltx.protocols import has


def autocast_context(device: torch.device, dtype: str):
    """bf16 autocast on CPU or GPU when `dtype` is (or "auto" resolves to) bfloat16."""
    if resolved_dtype(dtype, device) == "bfloat16":
        return torch.autocast(device_type=device.type, dtype=torch.bfloat16)
    return nullcontext()


def model_forward(
    model: torch.nn.Module, ids: torch.Tensor, entropies: torch.Tensor | None = None,
    doc_ids: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """(logits [B, T, V], starts [B, T] bool or None when the model does not patch).

    Patching once here and passing the starts in gives the same logits as `model(ids)`
    (the patcher in the loop) while letting the caller count patches. The extra column
    `include_next` adds is what a decoder's lookahead rule needs (bltx/protocols.py `patches`).
    `doc_ids` [B, T] (data.document_mask): passed on only when given, so models without the
    keyword keep working on plain data.
    """
    docs = {} if doc_ids is None else {"doc_ids": doc_ids}
    if has(model, "realised_starts"):  # the forward decides (and reports) its boundaries
        logits = model(ids, **docs)
        return logits, model.last_starts
    if not has(model, "patches"):
        return model(ids, **docs), None
    with torch.no_grad():  # boundaries are discrete: nothing to differentiate
        starts = model.patch(ids, entropies=entropies, include_next=True)
    return model(ids, starts=starts, **docs), starts[:, : ids.shape[1]]


def batch_nll(
    model: torch.nn.Module, ids: torch.Tensor, targets: torch.Tensor, entropies: torch.Tensor | None = None,
    doc_ids: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """(summed next-byte NLL in nats of the batch, starts [B, T] or None).

    Models that are not next-byte predictors (a BPE-token LM scores whole tokens) have the
    `own_loss` capability, `nll_sum(ids, targets)`, and are scored by it; every other model by
    cross-entropy of its logits. Both give nats over the same targets, so bits per byte
    compare across models.
    """
    if not has(model, "own_loss"):
        logits, starts = model_forward(model, ids, entropies, doc_ids)
        return next_byte_nll(logits, targets, reduction="sum"), starts
    starts = None
    if has(model, "patches") and not has(model, "realised_starts"):
        with torch.no_grad():
            starts = model.patch(ids, entropies=entropies)
    return model.nll_sum(ids, targets), starts


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
                nll, starts = batch_nll(model, ids, targets, None if ent is None else ent.to(device),
                                        None if docs is None else docs.to(device))
            totals[0] += nll.double()
            totals[1] += scored_targets(targets).sum()
            totals[2] += byte_targets(targets).sum()
            if starts is not None:
                totals[3] += starts.sum()
            totals[4] += targets.numel()
    finally:
        model.train(was_training)
    nll, n_targets, n_bytes, n_patches, n_positions = reduce_sum(totals).tolist()
    return BpbResult(nll, int(n_targets), int(n_bytes), int(n_patches), int(n_positions))
