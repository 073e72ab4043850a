"""One id stream over many documents: `[BOS] doc0 EOS [BOS] doc1 EOS ...`, never materialised.

Documents stay on disk; `IdStream.read(start, n)` reads just the bytes asked for, so the
cost of a batch does not depend on the corpus size. A file is one document (raw bytes) or
many (JSONL lines, Parquet or Arrow rows: bltx/data/formats.py), whose lengths come from
its index, so positions are known without reading the texts. `StreamView` is a contiguous
slice of a stream (the train or the validation split of a source) and carries the optional
per-position entropies stored beside the data (precomputed patching).
"""

from __future__ import annotations

import bisect
import threading
from dataclasses import dataclass

import numpy as np

from bltx.bytes import BOS_ID, EOS_ID, OFFSET
from bltx.data.doc_index import LayoutEnds


class IdStream:
    """Document files (bltx/protocols.py DocumentFile) joined into one virtual stream of ids (byte b -> b + 4, BOS=1, EOS=2)."""

    def __init__(self, docs: list, add_bos: bool = True):
        self.docs = docs  # the files, in stream order
        self.bos = int(add_bos)
        # Each document contributes [BOS] + bytes + EOS.
        self.per_doc = self.bos + 1
        self.num_docs = np.array([f.num_docs for f in docs], dtype=np.int64)
        self.file_lens = np.array([len(f) for f in docs], dtype=np.int64) + self.num_docs * self.per_doc
        self.ends = np.cumsum(self.file_lens)
        self._lock = threading.Lock()  # format readers keep small caches; one reader at a time

    def __len__(self) -> int:
        return int(self.ends[-1]) if len(self.ends) else 0

    def file_range(self, first: int, last: int) -> tuple[int, int]:
        """Stream positions [start, end) of files first..last-1."""
        start = int(self.ends[first - 1]) if first > 0 else 0
        return start, int(self.ends[last - 1]) if last > 0 else 0

    def read(self, start: int, length: int) -> np.ndarray:
        """Ids at positions [start, start + length) as int64."""
        if start < 0 or start + length > len(self):
            raise IndexError(f"read [{start}, {start + length}) outside stream of {len(self)}")
        out = np.empty(length, dtype=np.int64)
        filled, pos = 0, start
        f = int(np.searchsorted(self.ends, pos, side="right"))
        with self._lock:
            while filled < length:
                file_start = int(self.ends[f] - self.file_lens[f])
                take = min(int(self.ends[f]) - pos, length - filled)
                self._fill_file(out[filled : filled + take], f, pos - file_start)
                filled += take
                pos += take
                f += 1
        return out

    def _fill_file(self, out: np.ndarray, f: int, local: int) -> None:
        """Ids of file `f` from its layout offset `local` into `out`, document by document."""
        file = self.docs[f]
        if file.num_docs == 1:  # no index needed: the file's bytes are the document's
            self._fill_doc(out, lambda lo, hi: file.read_doc(0, lo, hi), len(file), local)
            return
        rows = file.index.rows
        ends = LayoutEnds(rows, self.per_doc)
        doc = bisect.bisect_right(ends, local)
        filled = 0
        while filled < len(out):
            doc_start = int(rows[doc, 0]) + doc * self.per_doc
            n = int(rows[doc, 1])
            take = min(doc_start + n + self.per_doc - local, len(out) - filled)
            self._fill_doc(out[filled : filled + take], lambda lo, hi, d=doc: file.read_doc(d, lo, hi), n,
                           local - doc_start)
            filled += take
            local += take
            doc += 1

    def _fill_doc(self, out: np.ndarray, read, n: int, local: int) -> None:
        """Write the ids of one document of `n` bytes (read by `read(lo, hi)`) from its
        layout offset `local` into `out`."""
        # Layout coordinates -> byte coordinates: -1 is BOS, n is EOS.
        lo = local - self.bos
        hi = lo + len(out)
        head = max(0, -lo)  # BOS slot (at most 1)
        out[:head] = BOS_ID
        b0, b1 = max(lo, 0), min(hi, n)
        if b1 > b0:
            out[head : head + b1 - b0] = read(b0, b1).astype(np.int64) + OFFSET
        if hi > n:  # the EOS slot is included
            out[-1] = EOS_ID


@dataclass
class StreamView:
    """The positions [start, end) of a stream, with entropies aligned to the same positions."""

    stream: IdStream
    start: int
    end: int
    entropies: np.ndarray | None = None  # float, aligned with the *whole* stream

    def __len__(self) -> int:
        return self.end - self.start

    def read(self, offset: int, length: int) -> np.ndarray:
        if offset < 0 or offset + length > len(self):
            raise IndexError(f"read [{offset}, {offset + length}) outside view of {len(self)}")
        return self.stream.read(self.start + offset, length)

    def read_entropies(self, offset: int, length: int) -> np.ndarray | None:
        if self.entropies is None:
            return None
        a = self.start + offset
        return np.asarray(self.entropies[a : a + length], dtype=np.float32)


def split_stream(stream: IdStream, validation_fraction: float, start: int = 0,
                 end: int | None = None) -> tuple[StreamView, StreamView | None]:
    """Positions [start, end) of the stream (all of it by default): train = the first
    (1 - f), validation = the last f (None when f == 0).

    A tail split keeps both splits contiguous, so windows never straddle the boundary and
    no byte is in both.
    """
    end = len(stream) if end is None else end
    n_val = int(round((end - start) * validation_fraction))
    train = StreamView(stream, start, end - n_val)
    val = StreamView(stream, end - n_val, end) if n_val > 0 else None
    return train, val
