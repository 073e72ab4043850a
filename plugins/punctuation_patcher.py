"""Worked example of a bltx plugin: a punctuation-aware patcher.

Selected from a recipe without touching bltx:

    [job]
    plugins = ["plugins.punctuation_patcher"]

    [model.patcher]
    type = "punctuation"
    max_patch_length = 16

A patch closes after every punctuation byte and after the first space of a run, so
"Hello, world!" becomes ["Hello,", " ", "world!"]: punctuation gets a boundary of its own,
which a plain space patcher would not give it. Like every bltx patcher it decides whether
byte t opens a patch from the bytes before t only (see `bltx.patching.Patcher`).
"""

from __future__ import annotations

import string
from dataclasses import dataclass

import torch

from bltx.bytes import OFFSET, VOCAB_SIZE
from bltx.patching import Patcher
from bltx.registry import register

WORD, SPACE, PUNCT = 0, 1, 2


@register("patcher", "punctuation")
class PunctuationPatcher(Patcher):
    """Closes a patch after punctuation and after the first space of a run."""

    @dataclass
    class Config:
        punctuation: str = string.punctuation
        max_patch_length: int | None = None

    def __init__(self, cfg: Config):
        super().__init__(max_patch_length=cfg.max_patch_length)
        classes = torch.full((VOCAB_SIZE,), WORD, dtype=torch.long)
        classes[:OFFSET] = SPACE  # BOS/EOS/PAD separate like whitespace
        for byte in string.whitespace.encode():
            classes[byte + OFFSET] = SPACE
        for byte in cfg.punctuation.encode():
            classes[byte + OFFSET] = PUNCT
        self.register_buffer("byte_class", classes, persistent=False)

    def compute_starts(self, ids, entropies=None):
        cls = self.byte_class[ids]
        prev = torch.nn.functional.pad(cls[:, :-1], (1, 0), value=WORD)
        prev2 = torch.nn.functional.pad(cls[:, :-2], (2, 0), value=WORD)
        return (prev == PUNCT) | ((prev == SPACE) & (prev2 != SPACE))
