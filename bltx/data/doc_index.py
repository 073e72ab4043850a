"""Document indexes of JSONL / Parquet / Arrow files, built once and kept on disk.

A file holding many documents is read at random through its index: one row of four int64
per document, `(start, length, a, b)`: where its text begins in the file's texts laid end to
end, how many UTF-8 bytes it has, and where the format finds it (a line's byte offset and
length; a row group or record batch and the row in it). Building an index is one pass over
the file, which also checks every record, so a malformed line fails before training starts.

Indexes live under `data.cache_dir` (default `~/.cache/bltx/data`) in a folder named by the
file's path, size, mtime, format and text field: a changed file gets a fresh index. A folder
is built under a temporary name and renamed when complete, under an exclusive lock, so
several processes (one per rank) share the work and never read a half-written index.
Indexes are read, not memory-mapped (a file truncated under a mapping is a SIGBUS that
kills the run): `docs.bin` is checked to be a regular file of exactly `docs` rows and read
into memory (32 bytes per document), at most `MAX_OPEN_INDEXES` at once. A damaged index
(garbled `meta.json`, a `docs.bin` of the wrong size) found before a run is rebuilt, with
a notice; one that changes during a run is one DataError line.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
import stat
import sys
import threading
from array import array
from collections import OrderedDict
from pathlib import Path
from typing import Callable

import numpy as np

from bltx.errors import DataError

VERSION = 1
COLUMNS = 4  # start, length, a, b
MAX_OPEN_INDEXES = 16
DEFAULT_CACHE = Path("~/.cache/bltx/data")


def cache_root(cache_dir: str = "") -> Path:
    root = Path(cache_dir or DEFAULT_CACHE).expanduser()
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DataError(f"data.cache_dir {root} cannot be created ({exc.strerror}); set data.cache_dir to a writable folder") from None
    return root


class IndexWriter:
    """Collects index rows (compactly) and extra files while a build runs."""

    def __init__(self, folder: Path):
        self.folder = folder
        self.rows = array("q")
        self.total = 0
        self.meta: dict = {}

    def add(self, length: int, a: int, b: int) -> None:
        self.rows.extend((self.total, length, a, b))
        self.total += length

    def add_many(self, lengths: np.ndarray, a: np.ndarray | int, b: np.ndarray) -> None:
        """Rows for many documents at once (a chunk of a columnar file)."""
        lengths = np.asarray(lengths, dtype=np.int64)
        starts = self.total + np.concatenate([[0], np.cumsum(lengths)[:-1]]).astype(np.int64)
        block = np.stack([starts, lengths, np.broadcast_to(np.int64(a) if np.isscalar(a) else a, lengths.shape),
                          np.asarray(b, dtype=np.int64)], axis=1)
        self.rows.frombytes(np.ascontiguousarray(block, dtype=np.int64).tobytes())
        self.total += int(lengths.sum())

    def __len__(self) -> int:
        return len(self.rows) // COLUMNS

    def finish(self) -> None:
        with open(self.folder / "docs.bin", "wb") as f:
            self.rows.tofile(f)
        meta = {**self.meta, "version": VERSION, "docs": len(self), "bytes": self.total}
        (self.folder / "meta.json").write_text(json.dumps(meta))


def index_folder(root: Path, path: Path, kind: str, text_field: str) -> Path:
    st = path.stat()
    key = f"{VERSION}|{kind}|{path.resolve()}|{st.st_size}|{st.st_mtime_ns}|{text_field}"
    digest = hashlib.sha1(key.encode("utf-8", "surrogatepass")).hexdigest()[:20]
    return root / f"{path.name[:60]}.{kind}.{digest}"


def build_index(root: Path, path: Path, kind: str, text_field: str,
                build: Callable[[IndexWriter], None]) -> Path:
    """The index folder of `path`, built by `build(writer)` unless a complete one exists."""
    final = index_folder(root, path, kind, text_field)
    if final.is_dir() and index_problem(final) is None:
        return final
    with open(f"{final}.lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # another process may be building it: wait
        try:
            if final.is_dir():  # complete (renamed into place), perhaps damaged since
                problem = index_problem(final)
                if problem is None:
                    return final
                print(f"warning: rebuilding the index of {path}: {problem}", file=sys.stderr, flush=True)
                shutil.rmtree(final, ignore_errors=True)
            tmp = Path(f"{final}.tmp{os.getpid()}")
            shutil.rmtree(tmp, ignore_errors=True)
            tmp.mkdir()
            try:
                writer = IndexWriter(tmp)
                build(writer)
                writer.finish()
                os.replace(tmp, final)
            finally:
                shutil.rmtree(tmp, ignore_errors=True)
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
    return final


class DocIndex:
    """A built index: `meta` in memory, the rows memory-mapped on demand (LRU-bounded)."""

    def __init__(self, folder: Path):
        self.folder = folder
        self.meta = read_meta(folder)
        self.docs = int(self.meta["docs"])
        self.bytes = int(self.meta["bytes"])

    @property
    def rows(self) -> np.ndarray:
        return _open_rows.get(self)


def _damaged(folder: Path, problem: str) -> DataError:
    return DataError(f"document index {folder} is damaged ({problem}); delete that folder and run again (it is rebuilt)")


def _meta_problem(folder: Path) -> tuple[dict | None, str | None]:
    """(meta, None) for a meta.json holding counts `docs` and `bytes`, else (None, why)."""
    path = folder / "meta.json"
    try:
        if not stat.S_ISREG(os.stat(path).st_mode):  # a FIFO would block the read
            return None, "its meta.json is not a regular file"
        meta = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None, "its meta.json is not JSON"
    counts = isinstance(meta, dict) and all(
        isinstance(meta.get(k), int) and not isinstance(meta.get(k), bool) and meta[k] >= 0 for k in ("docs", "bytes"))
    return (meta, None) if counts else (None, "its meta.json lacks the document and byte counts")


def _rows_problem(folder: Path, docs: int) -> str | None:
    """Why docs.bin is not a regular file of exactly `docs` rows, or None."""
    try:
        st = os.stat(folder / "docs.bin")
    except OSError as exc:
        return f"docs.bin cannot be read: {exc.strerror}"
    if not stat.S_ISREG(st.st_mode):
        return "docs.bin is not a regular file"
    if st.st_size != docs * COLUMNS * 8:
        return f"docs.bin has {st.st_size} bytes, {docs * COLUMNS * 8} expected"
    return None


def index_problem(folder: Path) -> str | None:
    """What is wrong with a built index folder, or None."""
    meta, problem = _meta_problem(folder)
    return problem if meta is None else (_rows_problem(folder, meta["docs"]) if meta["docs"] else None)


def read_meta(folder: Path) -> dict:
    meta, problem = _meta_problem(folder)
    if meta is None:
        raise _damaged(folder, problem)
    return meta


def read_rows(folder: Path, docs: int) -> np.ndarray:
    """`docs.bin` as a [docs, COLUMNS] int64 array, read (not mapped) after checking."""
    problem = _rows_problem(folder, docs)
    if problem is None:
        try:
            with open(folder / "docs.bin", "rb") as f:
                data = f.read(docs * COLUMNS * 8 + 1)
        except OSError as exc:
            data, problem = b"", f"docs.bin cannot be read: {exc.strerror}"
        if problem is None and len(data) != docs * COLUMNS * 8:  # changed since the check
            problem = f"docs.bin has {len(data)} bytes, {docs * COLUMNS * 8} expected"
    if problem is not None:
        raise _damaged(folder, problem)
    return np.frombuffer(data, dtype=np.int64).reshape(docs, COLUMNS)


class LayoutEnds:
    """End (exclusive) of document k in the id layout, where each document takes `per_doc`
    ids besides its bytes: a sorted sequence for `bisect`, never materialised."""

    def __init__(self, rows: np.ndarray, per_doc: int):
        self.rows = rows
        self.per_doc = per_doc

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, k: int) -> int:
        return int(self.rows[k, 0]) + int(self.rows[k, 1]) + (k + 1) * self.per_doc


class _OpenRows:
    def __init__(self, limit: int):
        self.limit = limit
        self.maps: OrderedDict[Path, np.ndarray] = OrderedDict()
        self.lock = threading.Lock()

    def get(self, index: DocIndex) -> np.ndarray:
        with self.lock:
            rows = self.maps.get(index.folder)
            if rows is not None:
                self.maps.move_to_end(index.folder)
                return rows
            if index.docs == 0:
                rows = np.zeros((0, COLUMNS), dtype=np.int64)
            else:
                rows = read_rows(index.folder, index.docs)
            self.maps[index.folder] = rows
            while len(self.maps) > self.limit:
                self.maps.popitem(last=False)
            return rows


_open_rows = _OpenRows(MAX_OPEN_INDEXES)
