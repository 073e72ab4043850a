"""The written contracts (bltx/protocols.py): built-in components have the capabilities the
engine asks them for, components without them do not, and a plugin that misses a required
part fails at build time in one line naming what it lacks."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
import torch
from torch import nn

import bltx
from bltx.errors import ConfigError
from bltx.model.baselines import BpeTransformer, ByteTransformer
from bltx.model.entropy_lm import EntropyLM
from bltx.model.learned_blt import LearnedChunkBLT
from bltx.protocols import CAPABILITIES, FLAGS, has, missing_cached
from bltx.registry import Registry, register
from helpers import TINY_BLT

ENTROPY_BLT = {**TINY_BLT, "patcher": {"type": "entropy", "threshold": 1.5, "model": {
    "type": "transformer", "dim": 16, "n_layers": 1, "n_heads": 2}}}


def test_built_in_models_offer_what_the_engine_asks_of_them():
    blt = bltx.build_model(ENTROPY_BLT)
    assert has(blt, "patches") and has(blt, "patcher") and has(blt, "model_flops")
    assert has(blt.patcher, "entropies") and missing_cached(blt.patcher.entropy_model, "entropy_model") == []
    assert has(blt, "sessions") and not has(blt, "whole_tokens") and not has(blt, "learned_chunks")
    static = bltx.build_model(TINY_BLT)
    assert not has(static.patcher, "entropies")  # precompute_entropies refuses it
    # Classes answer too: the contract is what a class defines, not what an instance holds.
    assert has(BpeTransformer, "patches") and has(BpeTransformer, "whole_tokens") and not has(BpeTransformer, "sessions")
    assert not has(ByteTransformer, "patches") and not has(ByteTransformer, "whole_tokens")
    assert not has(EntropyLM, "patches") and not has(EntropyLM, "patcher")
    assert has(LearnedChunkBLT, "patches") and has(LearnedChunkBLT, "sessions") and has(LearnedChunkBLT, "learned_chunks")
    # At most 8 capabilities beside the flops of every part: what a plugin author chooses.
    assert len(set(CAPABILITIES) - {"flops"}) <= 8


def test_cached_stepping_per_slot():
    blt = bltx.build_model(TINY_BLT)
    for slot in ("byte_embedder", "encoder", "latent", "decoder"):
        assert missing_cached(getattr(blt, slot), slot) == []
    assert missing_cached(nn.Linear(2, 2), "encoder") == ["init_cache", "prefill", "step", "close"]
    assert missing_cached(nn.Linear(2, 2), "decoder")[-1] == "set_patch"


def test_flags_need_true_and_unknown_capabilities_are_named():
    class Off(nn.Module):
        predicts_whole_tokens = False

    assert not has(Off(), "whole_tokens")
    with pytest.raises(KeyError, match="unknown capability 'session'; known: .*sessions"):
        has(nn.Linear(2, 2), "session")
    assert not set(CAPABILITIES) & set(FLAGS)


def test_a_plugin_latent_without_a_dim_or_flops_fails_in_one_line():
    if "test_no_dim" not in Registry.for_kind("latent")._entries:

        @register("latent", "test_no_dim")
        class NoDim(nn.Module):  # a forward and init_weights, but no `dim`, no forward_flops
            @dataclass
            class Config:
                width: int = 64

            def __init__(self, cfg: Config, **context):
                super().__init__()
                self.proj = nn.Linear(cfg.width, cfg.width)

            def forward(self, x: torch.Tensor) -> torch.Tensor:
                return self.proj(x)

            def init_weights(self) -> None:
                nn.init.zeros_(self.proj.weight)

    with pytest.raises(ConfigError) as exc:
        bltx.build_model({**TINY_BLT, "latent": {"type": "test_no_dim"}})
    message = str(exc.value)
    assert "\n" not in message
    assert message.startswith("model.latent: NoDim does not fulfil the latent contract")
    assert message.endswith("missing: dim, capability 'flops' (forward_flops(seq_len, patch_len))")
