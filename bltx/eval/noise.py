"""Noised-input bits per byte: how a model copes with character-level noise (BLT paper,
robustness section). The text is corrupted first, then bpb is measured on the noised bytes:

    random_case   each ASCII letter flips case with probability p
    char_drop     each byte is dropped with probability p
    repetition    each byte is repeated (doubled) with probability p
    uppercase     every ASCII letter upper-cased (p unused)

    results = noised_bpb(model, text_bytes, ["clean", "random_case", "uppercase"], seq_len=256)

Any model the trainer trains works (BLT, baselines); the same seed gives the same noise.
"""

from __future__ import annotations

import numpy as np
import torch

from bltx.bytes import BOS_ID, OFFSET
from bltx.errors import ConfigError

NOISES = ("clean", "random_case", "char_drop", "repetition", "uppercase")


def add_noise(data: bytes, kind: str, p: float = 0.1, seed: int = 0) -> bytes:
    """`data` corrupted by noise `kind` (see module doc)."""
    if kind not in NOISES:
        raise ConfigError(f"unknown noise '{kind}'; known: {', '.join(NOISES)}")
    arr = np.frombuffer(data, dtype=np.uint8).copy()
    rng = np.random.default_rng(seed)
    letters = ((arr >= 65) & (arr <= 90)) | ((arr >= 97) & (arr <= 122))
    if kind == "clean":
        return bytes(arr)
    if kind == "uppercase":
        lower = (arr >= 97) & (arr <= 122)
        arr[lower] -= 32
        return bytes(arr)
    hit = rng.random(len(arr)) < p
    if kind == "random_case":
        arr[letters & hit] ^= 0x20  # ASCII case bit
        return bytes(arr)
    if kind == "char_drop":
        return bytes(arr[~hit])
    return bytes(np.repeat(arr, np.where(hit, 2, 1)))  # repetition


def byte_windows(data: bytes, seq_len: int, batch_size: int, max_windows: int = 0) -> list[dict[str, torch.Tensor]]:
    """BOS + bytes cut into windows of seq_len inputs / next-id targets (like training)."""
    ids = np.concatenate([[BOS_ID], np.frombuffer(data, dtype=np.uint8).astype(np.int64) + OFFSET])
    n = (len(ids) - 1) // seq_len
    if max_windows > 0:
        n = min(n, max_windows)
    if n == 0:
        raise ConfigError(f"the text has {len(data)} bytes, fewer than one window of {seq_len + 1}")
    rows = torch.from_numpy(np.stack([ids[i * seq_len: i * seq_len + seq_len + 1] for i in range(n)]))
    return [{"ids": rows[i: i + batch_size, :-1], "targets": rows[i: i + batch_size, 1:]}
            for i in range(0, n, batch_size)]


def noised_bpb(model: torch.nn.Module, data: bytes, kinds: list[str] | tuple[str, ...] = NOISES,
               seq_len: int = 256, batch_size: int = 8, max_windows: int = 0, p: float = 0.1,
               seed: int = 0, dtype: str = "float32") -> dict[str, dict[str, float]]:
    """{noise: {"bpb", "loss", "mean_patch_length"?}} of `model` on `data` under each noise."""
    from bltx.train.loss import evaluate_bpb

    device = next(model.parameters()).device
    out = {}
    for kind in kinds:
        batches = byte_windows(add_noise(data, kind, p, seed), seq_len, batch_size, max_windows)
        out[kind] = evaluate_bpb(model, batches, device, dtype).scalars()
    return out
