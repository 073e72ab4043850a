"""The entropy model as a trainable model: `[model] type = "entropy_lm"`.

Wraps the registered entropy model (`build("entropy_model", cfg.entropy_model)`) behind the
trainer's model API, so `recipes/entropy_tiny.toml` trains it with the ordinary trainer.
The wrapped module sits at attribute `entropy_model`, so a checkpoint's weights are named
`entropy_model.*`: the entropy patcher strips that prefix when it loads them.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from bltx.model import entropy_model as _entropy_model  # noqa: F401  (registers "transformer")
from bltx.model.attention import attention_backend, check_backend_name
from bltx.model.output import ModelOutput, lm_output
from bltx.protocols import FlopTerm
from bltx.registry import build, register
from bltx.schema import component


@register("model", "entropy_lm")
class EntropyLM(nn.Module):
    """A byte LM trained on next-byte prediction, later frozen inside an entropy patcher."""

    @dataclass
    class Config:
        entropy_model: dict = component("entropy_model", {"type": "transformer"})
        attention: str = "sdpa"

        def __post_init__(self):
            check_backend_name(self.attention)

    def __init__(self, cfg: Config, **context):
        super().__init__()
        self.cfg = cfg
        backend = attention_backend(cfg.attention, where="model.attention")
        self.entropy_model = build("entropy_model", cfg.entropy_model, where="model.entropy_model", backend=backend)

    def forward(self, ids: torch.Tensor, targets: torch.Tensor | None = None, **ignored) -> ModelOutput:
        """ids [B, T] -> next-byte logits [B, T, 260] (or their summed NLL given targets);
        patching arguments are ignored."""
        return lm_output(self.entropy_model(ids), targets)

    @torch.no_grad()
    def entropies(self, ids: torch.Tensor) -> torch.Tensor:
        return self.entropy_model.entropies(ids)

    def init_weights(self) -> None:
        self.entropy_model.init_weights()

    def flop_terms(self, seq_len: int, patch_len: float) -> dict[str, FlopTerm]:
        """A byte LM: its forward FLOPs per byte, trained."""
        return {"entropy_model": FlopTerm(self.entropy_model.forward_flops(seq_len, patch_len))}
