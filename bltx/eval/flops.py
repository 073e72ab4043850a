"""The one FLOP counter: sums what the model's components report about themselves.

Every component counts its own forward FLOPs (`forward_flops`, per byte for local parts,
the embedder and the entropy model, per patch for the latent; conventions and the
attention rule in bltx/model/flop_math.py) and a model gathers them per byte
(`flop_terms`, bltx/protocols.py). This module only adds them up, and is what the eval
task, `--dry-run`, tools/compare.py and the benchmarks use.

Training FLOPs are 3x forward for trained parts (forward + backward) and 1x for frozen ones
(the entropy model inside a patcher).
"""

from __future__ import annotations

import torch

from bltx.errors import ConfigError
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
    out = {name: t.per_byte * (3.0 if training and t.trained else 1.0) for name, t in terms.items()}
    out["total"] = sum(out.values())
    return out


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
