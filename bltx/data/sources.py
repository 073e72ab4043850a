"""Byte sources: recipe paths (files, globs, bundled corpora) -> files read on demand.

Every file is read as raw bytes, text or binary alike: bltx never decodes, so non-UTF-8
bytes are data like any other. A batch reads just the bytes it needs (`os.pread`), so a
corpus larger than RAM costs nothing up front. Files are not memory-mapped: a map holds a
descriptor per file (a folder corpus could exceed `ulimit -n`) and turns a file truncated
under a running job into SIGBUS. Instead a small shared cache keeps at most
`MAX_OPEN_FILES` descriptors, and every read checks the file's size and mtime against what
they were at open, so a changed file is a clear DataError.
"""

from __future__ import annotations

import glob
import os
import stat
import threading
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from bltx.bundled import PREFIX as BUNDLED_PREFIX
from bltx.bundled import bundled_path
from bltx.errors import DataError
from bltx.paths import expand_paths  # noqa: F401  (the data room's public name for it)

MAX_OPEN_FILES = 64


def resolve_bundled(name: str, suffix: str = ".txt") -> Path:
    """`tiny_shakespeare` -> bltx/data/corpora/tiny_shakespeare.txt (or NAME exactly)."""
    return bundled_path(name, suffix, DataError)


@dataclass
class ByteFile:
    """One document held in memory (tests, small inputs): bytes as a uint8 array."""

    path: Path
    data: np.ndarray
    kind = "raw"  # a document file (bltx/protocols.py DocumentFile) of one document
    num_docs = 1

    def __len__(self) -> int:
        return int(self.data.shape[0])

    def read(self, lo: int, hi: int) -> np.ndarray:
        return self.data[lo:hi]

    def read_doc(self, doc: int, lo: int, hi: int) -> np.ndarray:
        return self.read(lo, hi)


class DiskFile:
    """One document on disk, read on demand; size and mtime are those seen at open."""

    kind = "raw"  # a document file (bltx/protocols.py DocumentFile) of one document
    num_docs = 1

    def __init__(self, path: Path, size: int, mtime_ns: int):
        self.path = path
        self.size = size
        self.mtime_ns = mtime_ns

    def __len__(self) -> int:
        return self.size

    def read(self, lo: int, hi: int) -> np.ndarray:
        """Bytes [lo, hi) as uint8; DataError if the file changed since it was opened."""
        with _descriptors.lock:  # a background loader thread reads too
            fd = _descriptors.get(self.path)
            st = os.fstat(fd)  # a cheap syscall on an open descriptor: checked on every read
            data = os.pread(fd, hi - lo, lo)
        if st.st_size != self.size or st.st_mtime_ns != self.mtime_ns or len(data) != hi - lo:
            raise DataError(
                f"data file {self.path} changed during the run (size {self.size} -> {st.st_size} "
                f"bytes, or rewritten); restore it, or start a fresh run (job.dump_dir) on the new data"
            )
        return np.frombuffer(data, dtype=np.uint8)

    def read_doc(self, doc: int, lo: int, hi: int) -> np.ndarray:
        return self.read(lo, hi)


class _Descriptors:
    """At most MAX_OPEN_FILES open descriptors, least recently used closed first."""

    def __init__(self, limit: int):
        self.limit = limit
        self.open: OrderedDict[Path, int] = OrderedDict()
        self.lock = threading.RLock()

    def get(self, path: Path) -> int:
        fd = self.open.get(path)
        if fd is not None:
            self.open.move_to_end(path)
            return fd
        try:
            fd = os.open(path, os.O_RDONLY)
        except OSError as exc:
            raise DataError(f"cannot read data file {path}: {exc.strerror}; it vanished or lost permissions during the run") from None
        self.open[path] = fd
        while len(self.open) > self.limit:
            _, old = self.open.popitem(last=False)
            os.close(old)
        return fd


_descriptors = _Descriptors(MAX_OPEN_FILES)


def open_bytes(path: Path) -> DiskFile:
    """Record a file's size and mtime, and check now that it can be read."""
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
        try:
            st = os.fstat(fd)
        finally:
            os.close(fd)
    except OSError as exc:
        raise DataError(f"cannot read data file {path}: {exc.strerror}") from None
    if not stat.S_ISREG(st.st_mode):
        raise DataError(f"data.paths: {path} is not a regular file (a pipe, device or socket); remove it from data.paths")
    return DiskFile(path, st.st_size, st.st_mtime_ns)


def open_sources(patterns: list[str] | tuple[str, ...], base: Path | None = None, opener=None) -> list:
    """Expand `patterns` and open each file with `opener` (raw bytes by default; see
    bltx/data/formats.py for documents). Empty files matched by a glob or folder are
    skipped; a file named explicitly that is empty, or no bytes at all, is an error."""
    opener = opener or open_bytes
    opened: list[ByteFile] = []
    for pattern in patterns:
        files = expand_paths([pattern], base)
        # A single file named as such (not found through a glob or a folder).
        explicit = not glob.has_magic(pattern) and len(files) == 1 and (
            pattern.startswith(BUNDLED_PREFIX) or files[0].name == Path(pattern).name
        )
        for path in files:
            doc = opener(path)
            if len(doc) == 0:
                if explicit:
                    what = "" if doc.kind == "raw" else " (no document in it has text)"
                    raise DataError(f"data file {path} is empty{what}; remove it from data.paths")
                continue
            opened.append(doc)
    if not opened:
        raise DataError(f"data.paths {list(patterns)} matched only empty files; no bytes to train on")
    return opened
