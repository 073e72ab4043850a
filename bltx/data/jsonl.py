"""JSON lines (`.jsonl`, `.json`; also `.gz` and `.zst`): one document per line, its text in
the field `data.text_field`.

Each non-blank line must be a JSON object whose text field is a string; the document is the
UTF-8 bytes of that string (never the JSON around it). Lines with an empty text are no
document. The index pass checks every line: a malformed one is an error naming the file and
the line, before any training. A plain file is then read in place (one line per document,
found by its byte offset); a compressed one cannot be read at random, so its texts are
decoded once into the index folder (`text.bin`) and read from there.
"""

from __future__ import annotations

import gzip
import io
import json
from pathlib import Path

import numpy as np

from bltx.data.doc_index import DocIndex, IndexWriter
from bltx.data.formats import IndexedFile, IndexedSource, missing_field
from bltx.data.sources import open_bytes
from bltx.errors import DataError
from bltx.registry import register

COMPRESSED = (".gz", ".zst")


def open_text_stream(path: Path):
    """A binary file object of the decompressed lines."""
    name = path.name.lower()
    if name.endswith(".gz"):
        return gzip.open(path, "rb")
    if name.endswith(".zst"):
        try:
            import zstandard
        except ImportError:
            raise DataError(f"data file {path} is zstd-compressed; install zstandard (pip install 'bltx[data]')") from None
        return io.BufferedReader(_CheckedZstd(open(path, "rb"), zstandard))
    return open(path, "rb")


class _CheckedZstd(io.RawIOBase):
    """The frames of a zstd file decoded one after another. zstandard's stream reader ends
    quietly when the file ends inside a frame, so a truncated `.zst` read as "empty" or as
    a broken last line; here it is an EOFError, which the index build reports as damage."""

    def __init__(self, raw, zstandard):
        self.raw = raw
        self.new = zstandard.ZstdDecompressor().decompressobj
        self.frame = None  # the frame being decoded; None before the first byte
        self.out, self.pos = b"", 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        while self.pos == len(self.out):
            chunk = self.raw.read(1 << 16)
            if not chunk:
                if self.frame is not None and not self.frame.eof:
                    raise EOFError("the file ends inside a zstd frame (truncated)")
                return 0
            decoded = []
            while chunk:
                if self.frame is None or self.frame.eof:  # concatenated frames
                    self.frame = self.new()
                decoded.append(self.frame.decompress(chunk))
                chunk = self.frame.unused_data if self.frame.eof else b""
            self.out, self.pos = b"".join(decoded), 0
        n = min(len(buffer), len(self.out) - self.pos)
        buffer[:n] = self.out[self.pos:self.pos + n]
        self.pos += n
        return n

    def close(self) -> None:
        self.raw.close()
        super().close()


def text_of(line: bytes, field: str, path: Path, lineno: int) -> str:
    """The text field of one JSON line; DataError naming file and line otherwise."""
    obj = record_of(line, path, lineno, f"a '{field}' field")
    if field not in obj:
        raise missing_field(path, f" line {lineno}", field, obj.keys())
    text = obj[field]
    if not isinstance(text, str):
        raise DataError(f"data file {path} line {lineno}: field '{field}' is {type(text).__name__}, not a string")
    return text


def record_of(line: bytes, path: Path, lineno: int, wanted: str) -> dict:
    """One JSON line as an object (`wanted` names what it should hold, for the error)."""
    try:
        obj = json.loads(line)
    except UnicodeDecodeError:
        raise DataError(f"data file {path} line {lineno}: not UTF-8 text; JSON lines must be UTF-8") from None
    except ValueError as exc:  # JSONDecodeError, or e.g. an integer too long to convert
        why = f"{exc.msg} at column {exc.colno}" if isinstance(exc, json.JSONDecodeError) else str(exc)
        raise DataError(f"data file {path} line {lineno}: not valid JSON ({why}); fix or remove the line") from None
    if not isinstance(obj, dict):
        raise DataError(f"data file {path} line {lineno}: a JSON {type(obj).__name__}, not an object with "
                        f"{wanted} (.json files are read as JSON lines: one object per line)")
    return obj


def encode_text(text: str) -> bytes:
    # Lone surrogates (legal in JSON escapes) are kept as their 3-byte forms, not dropped.
    return text.encode("utf-8", "surrogatepass")


def _compressed(path: Path) -> bool:
    return path.name.lower().endswith(COMPRESSED)


def _build(path: Path, field: str, writer: IndexWriter) -> None:
    blob = open(writer.folder / "text.bin", "wb") if _compressed(path) else None
    lineno, offset = 0, 0
    try:
        with open_text_stream(path) as lines:
            for lineno, line in enumerate(lines, 1):
                if line.strip():
                    data = encode_text(text_of(line, field, path, lineno))
                    if data:
                        if blob is not None:
                            blob.write(data)
                        writer.add(len(data), offset, len(line))
                offset += len(line)
    except DataError:
        raise
    except (OSError, EOFError, ValueError) as exc:  # a damaged .gz / .zst stream
        raise DataError(f"data file {path}: cannot be decompressed after line {lineno} ({exc}); "
                        f"the file is damaged or not what its name says") from None
    finally:
        if blob is not None:
            blob.close()


class JsonLinesFile(IndexedFile):
    kind = "jsonl"

    def __init__(self, path: Path, index: DocIndex, field: str):
        super().__init__(path, index)
        self.field = field
        compressed = _compressed(path)
        # Plain files are read in place; compressed ones from their decoded texts.
        self.raw = open_bytes(index.folder / "text.bin" if compressed else path) if self.num_docs else None
        self.compressed = compressed

    def read_doc(self, doc: int, lo: int, hi: int) -> np.ndarray:
        if self.compressed:  # the texts are laid end to end: read just the bytes asked for
            start = int(self.index.rows[doc, 0])
            return self.raw.read(start + lo, start + hi)
        return super().read_doc(doc, lo, hi)

    def load(self, row) -> np.ndarray:
        _, _, offset, length = row
        line = self.raw.read(offset, offset + length).tobytes()
        return np.frombuffer(encode_text(json.loads(line)[self.field]), dtype=np.uint8)


@register("data_source", "jsonl")
class JsonLinesSource(IndexedSource):
    """JSON lines: the text field of each line is a document (.jsonl, .json, .gz, .zst)."""

    kind, file = "jsonl", JsonLinesFile
    suffixes = tuple(f"{s}{c}" for s in (".jsonl", ".json") for c in ("", *COMPRESSED))
    build = staticmethod(_build)
