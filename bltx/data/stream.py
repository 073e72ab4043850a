"""One id stream over many documents: `[BOS] doc0 EOS [BOS] doc1 EOS ...`, never materialised.

Documents stay on disk; `IdStream.read(start, n)` reads just the bytes asked for, so the
cost of a batch does not depend on the corpus size. `StreamView` is a contiguous slice of a
stream (the train or the validation split) and carries the optional per-position entropies
stored beside the data (precomputed patching).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from bltx.bytes import BOS_ID, EOS_ID, OFFSET
from bltx.data.sources import ByteFile, DiskFile


class IdStream:
    """Documents joined into one virtual stream of ids (byte b -> b + 4, BOS=1, EOS=2)."""

    def __init__(self, docs: list[ByteFile | DiskFile], add_bos: bool = True):
        self.docs = docs
        self.bos = int(add_bos)
        # Each document contributes [BOS] + bytes + EOS.
        self.doc_lens = np.array([len(d) + self.bos + 1 for d in docs], dtype=np.int64)
        self.ends = np.cumsum(self.doc_lens)

    def __len__(self) -> int:
        return int(self.ends[-1]) if len(self.ends) else 0

    def read(self, start: int, length: int) -> np.ndarray:
        """Ids at positions [start, start + length) as int64."""
        if start < 0 or start + length > len(self):
            raise IndexError(f"read [{start}, {start + length}) outside stream of {len(self)}")
        out = np.empty(length, dtype=np.int64)
        filled, pos = 0, start
        doc = int(np.searchsorted(self.ends, pos, side="right"))
        while filled < length:
            doc_start = int(self.ends[doc] - self.doc_lens[doc])
            local = pos - doc_start
            take = min(int(self.doc_lens[doc]) - local, length - filled)
            self._fill_doc(out[filled : filled + take], doc, local)
            filled += take
            pos += take
            doc += 1
        return out

    def _fill_doc(self, out: np.ndarray, doc: int, local: int) -> None:
        """Write the ids of document `doc` from its layout offset `local` into `out`."""
        document = self.docs[doc]
        n = len(document)
        # Layout coordinates -> byte coordinates: -1 is BOS, n is EOS.
        lo = local - self.bos
        hi = lo + len(out)
        head = max(0, -lo)  # BOS slot (at most 1)
        out[:head] = BOS_ID
        b0, b1 = max(lo, 0), min(hi, n)
        if b1 > b0:
            out[head : head + b1 - b0] = document.read(b0, b1).astype(np.int64) + OFFSET
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


def split_stream(stream: IdStream, validation_fraction: float) -> tuple[StreamView, StreamView | None]:
    """Train = the first (1 - f) of the stream, validation = the last f (None when f == 0).

    A tail split keeps both splits contiguous, so windows never straddle the boundary and
    no byte is in both.
    """
    n = len(stream)
    n_val = int(round(n * validation_fraction))
    train = StreamView(stream, 0, n - n_val)
    val = StreamView(stream, n - n_val, n) if n_val > 0 else None
    return train, val
