"""A source model's tokenizer (its `tokenizer.json`), read at the byte level: what
byteifying a subword LM needs of it (issue 23). The source's patches are its tokens, so
stage 1 needs each token's exact bytes and where each token starts in a byte stream; a
Bolmo-style embedding adds, at every byte, the source's embedding of the longest vocabulary
token that ends there.

    tok = SourceTokenizer("checkpoints/Qwen2-0.5B")      # a save_pretrained folder
    tok.token_bytes[i]                                   # the exact bytes of token i (None: special)
    tok.token_starts("Hello world")                      # bool [T]: True at each token's first byte
    tok.longest_token_ending("Hello world")              # int64 [T]: that token's id (-1: none)

Byte-level BPE only (GPT-2's scheme, used by Llama 3, Qwen2, OLMo and others): its tokens
are strings over a 256-character alphabet standing one to one for the bytes, so every token
is an exact byte string and a token may hold part of a multi-byte character. Other schemes
(SentencePiece with byte fallback: Llama 2, Mistral 7B v0.1) are refused in one line.
Needs the `tokenizers` package (the `research` extra).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from bltx.errors import CheckpointError, DataError

TOKENIZER_FILE = "tokenizer.json"


def byte_level_alphabet() -> dict[str, int]:
    """Character -> byte of GPT-2's byte-level alphabet: printable Latin-1 bytes stand for
    themselves, the other 68 bytes (controls, space, soft hyphen, ...) for U+0100 onwards, in
    byte order, so that no token string holds whitespace or a control character."""
    printable = [*range(ord("!"), ord("~") + 1), *range(0xA1, 0xAC + 1), *range(0xAE, 0xFF + 1)]
    chars = {chr(b): b for b in printable}
    shifted = 0
    for b in range(256):
        if b not in printable:
            chars[chr(256 + shifted)] = b
            shifted += 1
    return chars


def _is_byte_level(spec: dict | None) -> bool:
    if not isinstance(spec, dict):
        return False
    if spec.get("type") == "ByteLevel":
        return True
    return any(_is_byte_level(part) for part in spec.get("pretokenizers", ()) or spec.get("decoders", ()))


class SourceTokenizer:
    """The byte-level view of a HF tokenizer (module doc)."""

    def __init__(self, folder: str | Path):
        try:
            from tokenizers import Tokenizer
        except ImportError:
            raise CheckpointError("reading a source tokenizer needs the `tokenizers` package: "
                                  "pip install tokenizers (or the 'research' extra)") from None
        path = Path(folder) / TOKENIZER_FILE if Path(folder).is_dir() else Path(folder)
        if not path.is_file():
            raise CheckpointError(f"no {TOKENIZER_FILE} in {folder}: byteifying reads the source's tokenizer "
                                  f"(save it with tokenizer.save_pretrained)")
        try:
            spec = json.loads(path.read_text(encoding="utf-8"))
            self.tokenizer = Tokenizer.from_file(str(path))
        except Exception as exc:  # noqa: BLE001 - a damaged file is one line, whatever the parser says
            raise CheckpointError(f"cannot read {path}: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}") from None
        if not (_is_byte_level(spec.get("pre_tokenizer")) or _is_byte_level(spec.get("decoder"))):
            kind = (spec.get("pre_tokenizer") or {}).get("type") or (spec.get("decoder") or {}).get("type")
            raise CheckpointError(f"{path} is not a byte-level BPE tokenizer (pre-tokenizer/decoder '{kind}'); "
                                  f"supported: byte-level BPE (Llama 3, Qwen2, OLMo); SentencePiece ones are not yet")
        alphabet = byte_level_alphabet()
        # Added tokens (<|endoftext|>, chat markers) are matched in the text before BPE and
        # stand for no bytes of it: never a patch of byte data.
        special = {t["id"] for t in spec.get("added_tokens", ())}
        vocab = self.tokenizer.get_vocab(with_added_tokens=True)
        self.token_bytes: list[bytes | None] = [None] * (max(vocab.values()) + 1)
        for text, i in vocab.items():
            if i not in special and all(c in alphabet for c in text):
                self.token_bytes[i] = bytes(alphabet[c] for c in text)
        self._trie = self._reversed_trie()

    @property
    def vocab_size(self) -> int:
        return len(self.token_bytes)

    def encode(self, text: str) -> list[int]:
        """The source's token ids of `text` (no special tokens added)."""
        ids = self.tokenizer.encode(text, add_special_tokens=False).ids
        data = text.encode("utf-8")
        if b"".join(self.token_bytes[i] or b"" for i in ids) != data:
            raise DataError("the source tokenizer changes the text it tokenizes (a normalizer, or special "
                            "tokens in it); byteifying needs tokens that spell out the bytes exactly")
        return ids

    def token_starts(self, text: str) -> np.ndarray:
        """bool [len(text's UTF-8 bytes)]: True at the first byte of each source token."""
        lengths = [len(self.token_bytes[i]) for i in self.encode(text)]
        starts = np.zeros(sum(lengths), dtype=bool)
        starts[np.cumsum([0, *lengths[:-1]])] = True
        return starts

    def _reversed_trie(self) -> dict:
        """Nested dicts over each token's bytes read backwards; key -1 holds the token id."""
        root: dict = {}
        for i, data in enumerate(self.token_bytes):
            if data:
                node = root
                for b in reversed(data):
                    node = node.setdefault(b, {})
                node[-1] = i
        return root

    def longest_token_ending(self, text: str | bytes) -> np.ndarray:
        """int64 [T]: at byte t, the id of the longest vocabulary token whose bytes end at t
        (-1 where none does; in byte-level BPE every single byte is a token, so never)."""
        data = text.encode("utf-8") if isinstance(text, str) else bytes(text)
        out = np.full(len(data), -1, dtype=np.int64)
        for t in range(len(data)):
            node, j = self._trie, t
            while j >= 0 and data[j] in node:
                node = node[data[j]]
                out[t] = node.get(-1, out[t])
                j -= 1
        return out
