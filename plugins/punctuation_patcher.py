"""Worked example of a bltx plugin: a punctuation-aware patcher.

Selected from a recipe without touching bltx:

    [job]
    plugins = ["plugins.punctuation_patcher"]

    [model.patcher]
    type = "punctuation"
    max_patch_length = 16

Bytes fall in three classes: word bytes (letters, digits and every non-ASCII byte, so UTF-8
characters stay whole), space-like bytes and punctuation. A patch begins wherever the class
changes to word or punctuation; spaces stay attached to the patch before them. So
"Hello, world!" becomes ["Hello", ", ", "world", "!"]: words and punctuation runs each get
their own patch, which a plain space patcher would glue together.
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
    """Patches at word / punctuation boundaries; spaces join the preceding patch."""

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
        prev = torch.nn.functional.pad(cls[:, :-1], (1, 0), value=SPACE)
        return (cls != prev) & (cls != SPACE)
