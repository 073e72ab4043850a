"""Recipe path patterns (`bltx:NAME`, files, folders, globs) -> the files they name.

Core, not data: the data loader reads corpora through it, and so do model components that
build themselves from text (a BPE vocabulary trained on the recipe's files), which must not
import the data room.
"""

from __future__ import annotations

import glob
import os
import stat
from pathlib import Path

from bltx.bundled import PREFIX as BUNDLED_PREFIX
from bltx.bundled import bundled_path
from bltx.errors import DataError


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
            files.append(bundled_path(pattern[len(BUNDLED_PREFIX):], ".txt", DataError))
            continue
        matched = _match(pattern, Path.cwd())
        if not matched and base is not None and not os.path.isabs(os.path.expanduser(pattern)):
            matched = _match(pattern, base)
        if not matched:
            where = Path(os.path.expanduser(pattern))
            # Every place tried, in the order tried: the working folder, then the recipe's.
            tried = [where] if where.is_absolute() else [Path.cwd() / where] + ([base / where] if base is not None else [])
            shown = " and ".join(str(p) for p in dict.fromkeys(tried))
            raise DataError(f"data.paths: nothing matches '{pattern}' (looked at {shown}); check the path")
        files.extend(matched)
    return files


def _match(pattern: str, root: Path) -> list[Path]:
    path = Path(os.path.expanduser(pattern))
    if not path.is_absolute():
        path = root / path
    if path.is_dir():
        found = list(path.rglob("*"))
    elif glob.has_magic(str(path)):
        found = [Path(p) for p in glob.glob(str(path), recursive=True)]
    else:
        found = [path] if os.path.lexists(path) else []
    # Sorted so the stream (and so every batch) does not depend on directory order.
    return sorted(p for p in found if _regular(p))


def _regular(path: Path) -> bool:
    """True for a regular file, False for a folder; DataError for anything else (a FIFO
    would block the reader, a device or socket is no corpus)."""
    try:
        mode = path.stat().st_mode
    except OSError:
        raise DataError(f"data.paths: {path} cannot be read (a broken link?); fix or remove it") from None
    if stat.S_ISREG(mode) or stat.S_ISDIR(mode):
        return stat.S_ISREG(mode)
    raise DataError(f"data.paths: {path} is not a regular file (a pipe, device or socket); remove it from data.paths")
