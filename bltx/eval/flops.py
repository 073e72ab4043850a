"""The one FLOP counter: sums what the model's components report about themselves.

Every component counts its own forward FLOPs (`forward_flops`, per byte for local parts,
the embedder and the entropy model, per patch for the latent; conventions and the
attention rule in bltx/model/flop_math.py) and a model gathers them per byte
(`flop_terms`, bltx/protocols.py). This module only adds them up, and is what the eval
task, `--dry-run`, tools/compare.py and the benchmarks use.

Training FLOPs per part, in data-flow order (the order of `flop_terms`): forward (1x), plus
the backward that flows through it (1x: gradients of its inputs, wanted when any trained
part comes before it or it has trainable parameters itself), plus the gradients of its
weights (1x times its trainable share of parameters). So a trained part costs 3x, a frozen
latent between trained local models 2x, a frozen first part or the entropy model inside a
patcher (FlopTerm.trained = False: it runs outside autograd) 1x, a LoRA-adapted part a
little over 2x. Frozen means requires_grad = False (training.freeze, [adapter]).
"""

from __future__ import annotations

import torch

from bltx.errors import ConfigError
from bltx.model.assembly import parameter_count
from bltx.protocols import has


def flops_per_byte(model: torch.nn.Module, mean_patch_length: float, seq_len: int,
                   training: bool = False) -> dict[str, float]:
    """FLOPs per byte by part (the model's `flop_terms` names) and 'total'.

    `model`: a built model (the meta device will do). `mean_patch_length`: bytes per patch
    (measured, or the stride for static patching). `seq_len`: bytes per sequence.
    """
    if mean_patch_length <= 0 or seq_len < 1:
        raise ConfigError("mean_patch_length must be > 0 and seq_len >= 1")
    if not has(model, "model_flops"):
        raise ConfigError(
            f"no FLOP accounting for model {type(model).__name__}: give it "
            f"flop_terms(seq_len, patch_len) (bltx/protocols.py)"
        )
    terms = model.flop_terms(seq_len, float(mean_patch_length))
    factors = training_factors(model, terms) if training else {}
    out = {name: t.per_byte * factors.get(name, 1.0) for name, t in terms.items()}
    out["total"] = sum(out.values())
    return out


def _trainable_share(model: torch.nn.Module, name: str) -> float:
    """Share of a part's parameters that train (1.0 for a part that is not a submodule)."""
    try:
        part = model.get_submodule(name)
    except AttributeError:
        return 1.0
    total = parameter_count(part)
    return parameter_count(part, trainable_only=True) / total if total else 0.0


def training_factors(model: torch.nn.Module, terms: dict) -> dict[str, float]:
    """Training FLOPs / forward FLOPs of each part (module doc)."""
    factors, upstream = {}, False
    for name, term in terms.items():
        if not term.trained:
            factors[name] = 1.0
            continue
        share = _trainable_share(model, name)
        flows = upstream or share > 0
        factors[name] = 1.0 + (1.0 if flows else 0.0) + share
        upstream = upstream or share > 0
    return factors


def total_flops_per_byte(model: torch.nn.Module, mean_patch_length: float, seq_len: int,
                         training: bool = False) -> float:
    return flops_per_byte(model, mean_patch_length, seq_len, training)["total"]


@torch.no_grad()
def measure_mean_patch_length(model: torch.nn.Module, batches) -> float:
    """Bytes per patch of `model.patch` over `batches` (1.0 for models that do not patch)."""
    if not has(model, "patches"):
        return 1.0
    n_bytes, n_patches = 0, 0
    for batch in batches:
        ids = batch["ids"]
        starts = model.patch(ids, entropies=batch.get("entropies"))
        n_bytes += ids.numel()
        n_patches += int(starts[:, : ids.shape[1]].sum())
    return n_bytes / max(1, n_patches)
