"""Byte sources: recipe paths (files, globs, bundled corpora) -> memory-mapped byte arrays.

Every file is read as raw bytes, text or binary alike: bltx never decodes, so non-UTF-8
bytes are data like any other. Files are memory-mapped with numpy, so a corpus larger than
RAM costs only the pages a batch touches.
"""

from __future__ import annotations

import glob
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from bltx.errors import DataError

BUNDLED_PREFIX = "bltx:"
CORPORA_DIR = Path(__file__).resolve().parent / "corpora"


def bundled_names() -> list[str]:
    """Names usable as `bltx:NAME` (stems of the files in bltx/data/corpora)."""
    return sorted({p.name.split(".")[0] for p in CORPORA_DIR.iterdir() if p.is_file() and p.suffix == ".txt"})


def resolve_bundled(name: str, suffix: str = ".txt") -> Path:
    """`tiny_shakespeare` -> bltx/data/corpora/tiny_shakespeare.txt (or NAME exactly)."""
    for candidate in (CORPORA_DIR / name, CORPORA_DIR / f"{name}{suffix}"):
        if candidate.is_file():
            return candidate
    raise DataError(
        f"no bundled corpus '{BUNDLED_PREFIX}{name}'; bundled: "
        + ", ".join(f"{BUNDLED_PREFIX}{n}" for n in bundled_names())
    )


def expand_paths(patterns: list[str] | tuple[str, ...], base: Path | None = None) -> list[Path]:
    """Recipe path patterns -> existing files, in a deterministic order.

    A pattern is `bltx:NAME`, a file, a folder (all files under it, recursively) or a glob
    (`**` allowed). Relative patterns are tried in the current folder first, then relative
    to `base` (the recipe's folder). Every pattern must match at least one file.
    """
    if not patterns:
        raise DataError("data.paths is empty; name at least one file, glob or bltx:NAME corpus")
    files: list[Path] = []
    for pattern in patterns:
        if pattern.startswith(BUNDLED_PREFIX):
            files.append(resolve_bundled(pattern[len(BUNDLED_PREFIX):]))
            continue
        matched = _match(pattern, Path.cwd())
        if not matched and base is not None and not os.path.isabs(os.path.expanduser(pattern)):
            matched = _match(pattern, base)
        if not matched:
            where = Path(os.path.expanduser(pattern))
            shown = where if where.is_absolute() else (base or Path.cwd()) / where
            raise DataError(f"data.paths: nothing matches '{pattern}' (looked at {shown}); check the path")
        files.extend(matched)
    return files


def _match(pattern: str, root: Path) -> list[Path]:
    path = Path(os.path.expanduser(pattern))
    if not path.is_absolute():
        path = root / path
    if path.is_file():
        return [path]
    if path.is_dir():
        return sorted(p for p in path.rglob("*") if p.is_file())
    if glob.has_magic(str(path)):
        # Sorted so the stream (and so every batch) does not depend on directory order.
        return sorted(Path(p) for p in glob.glob(str(path), recursive=True) if os.path.isfile(p))
    return []


@dataclass
class ByteFile:
    """One document: a file's bytes as a read-only uint8 array (memory-mapped when non-empty)."""

    path: Path
    data: np.ndarray

    def __len__(self) -> int:
        return int(self.data.shape[0])


def open_bytes(path: Path) -> ByteFile:
    """Memory-map a file as uint8. Empty files get an empty array (numpy cannot map them)."""
    try:
        size = path.stat().st_size
    except OSError as exc:
        raise DataError(f"cannot read data file {path}: {exc.strerror}") from None
    if size == 0:
        return ByteFile(path, np.zeros(0, dtype=np.uint8))
    try:
        return ByteFile(path, np.memmap(path, dtype=np.uint8, mode="r"))
    except OSError as exc:
        raise DataError(f"cannot memory-map data file {path}: {exc.strerror}") from None


def open_sources(patterns: list[str] | tuple[str, ...], base: Path | None = None) -> list[ByteFile]:
    """Expand `patterns` and open each file. Empty files matched by a glob or folder are
    skipped; a file named explicitly that is empty, or no bytes at all, is an error."""
    opened: list[ByteFile] = []
    for pattern in patterns:
        files = expand_paths([pattern], base)
        # A single file named as such (not found through a glob or a folder).
        explicit = not glob.has_magic(pattern) and len(files) == 1 and (
            pattern.startswith(BUNDLED_PREFIX) or files[0].name == Path(pattern).name
        )
        for path in files:
            doc = open_bytes(path)
            if len(doc) == 0:
                if explicit:
                    raise DataError(f"data file {path} is empty; remove it from data.paths")
                continue
            opened.append(doc)
    if not opened:
        raise DataError(f"data.paths {list(patterns)} matched only empty files; no bytes to train on")
    return opened
