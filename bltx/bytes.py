"""Byte <-> id mapping shared by every component, matching the released BLT checkpoints.

Byte value b maps to id b + OFFSET; the first four ids are special. BOE (beginning of
entity/patch) and PAD share id 0, as in the released models.
"""

from __future__ import annotations

import numpy as np
import torch

BOE_ID = 0
PAD_ID = 0
BOS_ID = 1
EOS_ID = 2
OFFSET = 4
VOCAB_SIZE = 256 + OFFSET  # 260
# Target id of a position that is not trained on (a prompt byte of supervised fine-tuning
# data, window padding): the cross-entropy's ignore_index, so neither the model nor the
# loss needs another input. Negative, so it is never a byte (>= OFFSET) either.
IGNORE_ID = -100


def scored_targets(targets: torch.Tensor) -> torch.Tensor:
    """bool, like `targets`: the targets the loss counts (every one but IGNORE_ID)."""
    return targets != IGNORE_ID


def byte_targets(targets: torch.Tensor) -> torch.Tensor:
    """bool, like `targets`: the scored targets that are bytes, the denominator of bits per
    byte (special targets such as EOS add their cost to the loss but are no byte)."""
    return targets >= OFFSET


def encode(data: bytes | bytearray | str, bos: bool = False, eos: bool = False) -> torch.Tensor:
    """Bytes (or a str, UTF-8 encoded) -> 1-D long tensor of ids."""
    if isinstance(data, str):
        data = data.encode("utf-8")
    ids = torch.from_numpy(np.frombuffer(bytes(data), dtype=np.uint8).astype(np.int64)) + OFFSET
    parts = ([torch.tensor([BOS_ID])] if bos else []) + [ids] + ([torch.tensor([EOS_ID])] if eos else [])
    return torch.cat(parts) if len(parts) > 1 else ids


def decode(ids: torch.Tensor | list[int], errors: str = "replace") -> str:
    """Ids -> text; special ids are dropped, invalid UTF-8 is replaced."""
    return decode_bytes(ids).decode("utf-8", errors=errors)


def decode_bytes(ids: torch.Tensor | list[int]) -> bytes:
    """Ids -> raw bytes; special ids (< OFFSET) are dropped."""
    values = ids.tolist() if isinstance(ids, torch.Tensor) else list(ids)
    return bytes(v - OFFSET for v in values if OFFSET <= v < VOCAB_SIZE)


def bytes_to_ids(byte_tensor: torch.Tensor) -> torch.Tensor:
    """uint8 tensor -> long ids (vectorised, for the data pipeline)."""
    return byte_tensor.long() + OFFSET
