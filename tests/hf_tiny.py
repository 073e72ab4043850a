"""A tiny random Hugging Face BltForCausalLM saved with save_pretrained (what the released
BLT folders are), for tests that start runs from pretrained weights."""

from __future__ import annotations

from pathlib import Path

import torch


def save_tiny_hf(folder: Path, seed: int = 0, **save_kwargs) -> Path:
    """Random weights (std 0.1) and an entropy threshold at the median entropy of random
    bytes, so realtime patching cuts mixed, row-dependent patches."""
    from test_hf_parity import random_hf

    hf = random_hf("enc_last_dec_all", seed)
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(4, 260, (4, 32), generator=g)
    with torch.no_grad():
        ent, _, _ = hf.model.patcher(ids, patch_size=4, threshold=0.0)
    hf.config.patching_threshold = float(ent.median())
    hf.save_pretrained(folder, **save_kwargs)
    return folder


def hf_logits(folder: Path, ids: torch.Tensor) -> torch.Tensor:
    from transformers import BltForCausalLM

    model = BltForCausalLM.from_pretrained(folder).eval()
    with torch.no_grad():
        return model(ids, use_cache=False).logits


def random_ids(B: int = 2, T: int = 48, seed: int = 3) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(4, 260, (B, T), generator=g)
    ids[:, 0] = 1
    return ids
