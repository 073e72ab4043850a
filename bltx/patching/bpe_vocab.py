"""Byte-level BPE tokenizers trained on a recipe's data with Hugging Face `tokenizers`
(an optional dependency: `pip install tokenizers`, or the `research` extra).

    vocab = load_or_train(["bltx:tiny_shakespeare"], vocab_size=512)
    tokens, lengths = vocab.encode_bytes(b"First Citizen:")   # token ids, bytes per token
    vocab.token_bytes[tokens[0]]                               # b"First"

Bytes are mapped to text one to one through Latin-1 (byte b -> the character U+00b), so
every token is an exact byte string, character offsets are byte offsets, and all 256
single bytes are in the initial alphabet: any byte sequence tokenizes, no unknown token.
Pre-tokenization splits GPT-2 style (an optional leading space, then a run of letters,
digits or other symbols; runs of whitespace), so tokens never cross word boundaries.

The tokenizer is trained once on the first `fraction` of the concatenated files (default
0.95: the trainer holds out the tail as validation) and cached as JSON under `cache_dir` (default ~/.cache/bltx/bpe),
keyed by the files' contents and the settings, so later builds just load it.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from bltx.bytes import OFFSET
from bltx.errors import ConfigError
from bltx.paths import expand_paths

FORMAT = "bltx-bpe-1"
PRETOKENIZE = r" ?[A-Za-z]+| ?[0-9]+| ?[^\sA-Za-z0-9]+|\s+"
DEFAULT_CACHE = "~/.cache/bltx/bpe"


def _tokenizers():
    try:
        import tokenizers
    except ImportError:
        raise ConfigError(
            "the BPE baseline and the bpe patcher need the `tokenizers` package: "
            "pip install tokenizers (or the 'research' extra)"
        ) from None
    return tokenizers


@dataclass
class BpeVocab:
    """A trained tokenizer plus the byte string of every token id."""

    tokenizer: object
    token_bytes: list[bytes]
    path: Path | None = None

    @property
    def size(self) -> int:
        return len(self.token_bytes)

    def encode_bytes(self, data: bytes) -> tuple[list[int], list[int]]:
        """Token ids and bytes per token of one byte string."""
        enc = self.tokenizer.encode(data.decode("latin-1"), add_special_tokens=False)
        return enc.ids, [end - start for start, end in enc.offsets]

    def encode_batch(self, texts: list[bytes]) -> list[tuple[list[int], list[int]]]:
        encs = self.tokenizer.encode_batch([t.decode("latin-1") for t in texts], add_special_tokens=False)
        return [(e.ids, [end - start for start, end in e.offsets]) for e in encs]

    def first_byte_ids(self) -> torch.Tensor:
        """[size] long: the bltx id (byte + OFFSET) of each token's first byte."""
        return torch.tensor([tb[0] + OFFSET for tb in self.token_bytes], dtype=torch.long)


def corpus_bytes(paths: list[str], fraction: float = 0.95, base: Path | None = None) -> bytes:
    """The first `fraction` of the concatenated files named by recipe-style `paths`."""
    if not 0.0 < fraction <= 1.0:
        raise ConfigError(f"BPE training fraction must be in (0, 1], got {fraction}")
    data = b"".join(p.read_bytes() for p in expand_paths(list(paths), base))
    return data[: max(1, int(len(data) * fraction))]


def train_bpe(data: bytes, vocab_size: int) -> BpeVocab:
    """Train a byte-level BPE tokenizer with `vocab_size` tokens (>= 256) on `data`."""
    if vocab_size < 256:
        raise ConfigError(f"BPE vocab_size must be >= 256 (every single byte is a token), got {vocab_size}")
    tk = _tokenizers()
    tokenizer = tk.Tokenizer(tk.models.BPE())
    tokenizer.pre_tokenizer = tk.pre_tokenizers.Split(tk.Regex(PRETOKENIZE), behavior="isolated")
    trainer = tk.trainers.BpeTrainer(
        vocab_size=vocab_size,
        initial_alphabet=[chr(i) for i in range(256)],
        min_frequency=2,
        show_progress=False,
        special_tokens=[],
    )
    text = data.decode("latin-1")
    # Train on lines (chunks keep the trainer's word counting cheap); the split regex
    # treats newlines as whitespace anyway.
    tokenizer.train_from_iterator(text.splitlines(keepends=True) or [text], trainer=trainer)
    return _with_bytes(tokenizer)


def _with_bytes(tokenizer, path: Path | None = None) -> BpeVocab:
    vocab = tokenizer.get_vocab()
    token_bytes = [b""] * len(vocab)
    for token, index in vocab.items():
        token_bytes[index] = token.encode("latin-1")
    if any(len(tb) == 0 for tb in token_bytes):
        raise ConfigError("BPE tokenizer has gaps in its token ids; retrain it")
    return BpeVocab(tokenizer, token_bytes, path)


def cache_key(data: bytes, vocab_size: int) -> str:
    h = hashlib.sha256()
    h.update(json.dumps({"format": FORMAT, "vocab_size": vocab_size, "pattern": PRETOKENIZE}).encode())
    h.update(hashlib.sha256(data).digest())
    return h.hexdigest()[:16]


def load_or_train(
    paths: list[str],
    vocab_size: int,
    fraction: float = 0.95,
    cache_dir: str = DEFAULT_CACHE,
    base: Path | None = None,
) -> BpeVocab:
    """The tokenizer for (files, vocab_size, fraction): loaded from `cache_dir` when a
    previous build trained it, else trained now and saved there."""
    data = corpus_bytes(paths, fraction, base)
    path = Path(cache_dir).expanduser() / f"bpe-{vocab_size}-{cache_key(data, vocab_size)}.json"
    if path.is_file():
        return load_tokenizer(path)
    vocab = train_bpe(data, vocab_size)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")  # one per process: builds may race
    vocab.tokenizer.save(str(tmp))
    tmp.replace(path)  # atomic: a concurrent build or reader never sees a half-written file
    vocab.path = path
    return vocab


def load_tokenizer(path: str | Path) -> BpeVocab:
    """A tokenizer JSON saved by `load_or_train` (or any byte-level one built the same way)."""
    tk = _tokenizers()
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"no BPE tokenizer file at {path}")
    return _with_bytes(tk.Tokenizer.from_file(str(path)), path)


def split_specials(row: np.ndarray) -> list[tuple[str, int | bytes]]:
    """One row of bltx ids -> [("special", id) | ("bytes", b"...")] runs, in order."""
    out: list[tuple[str, int | bytes]] = []
    special = row < OFFSET
    edges = np.flatnonzero(np.diff(special.astype(np.int8))) + 1
    for chunk in np.split(row, edges):
        if len(chunk) == 0:
            continue
        if chunk[0] < OFFSET:
            out.extend(("special", int(v)) for v in chunk)
        else:
            out.append(("bytes", (chunk - OFFSET).astype(np.uint8).tobytes()))
    return out
