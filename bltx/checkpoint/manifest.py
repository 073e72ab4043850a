"""Checkpoint integrity: a manifest of every file's size and sha256, checked before loading.

A save writes `manifest.json` (step, and relative path, size and sha256 of every file) as
its last file before the `COMPLETE` marker. `problem(folder)` re-reads the files and says
what is wrong (a missing, truncated, extended, altered or unlisted file; a garbage
manifest), or None when the folder matches its manifest. Random bytes written anywhere in a
`.distcp`, a truncated RNG file or a rewritten `meta.json` are all caught before DCP or
torch reads them.

Checkpoints written before bltx had manifests have none: they are "legacy" and load
unverified, with a notice (refusing them would strand every earlier run).

Hashing reads the whole checkpoint once, about as much I/O as loading it; a folder that
verified is remembered for the rest of the process (keyed by its manifest's identity), so
finding the newest good checkpoint and then loading it hash it once.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

MARKER = "COMPLETE"
MANIFEST = "manifest.json"
FORMAT = 1

_verified: set[tuple] = set()


def _sha256(path: Path) -> str:
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def _files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file() and p.relative_to(folder).as_posix() not in (MANIFEST, MARKER))


def write_manifest(folder: Path, step: int) -> None:
    """Record every file of `folder` (a finished save, before its marker) in its manifest."""
    entries = [
        {"path": p.relative_to(folder).as_posix(), "size": p.stat().st_size, "sha256": _sha256(p)}
        for p in _files(folder)
    ]
    text = json.dumps({"format": FORMAT, "step": step, "files": entries}, indent=1) + "\n"
    with open(folder / MANIFEST, "w", encoding="utf-8") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())


def irregular_entry(folder: Path) -> str | None:
    """The first entry under `folder` that is neither a regular file nor a folder (a symlink,
    FIFO, device or socket), described; None when there is none. Checked without following
    links and before anything is opened: opening a FIFO blocks, a link reads elsewhere."""
    stack = [folder]
    while stack:
        with os.scandir(stack.pop()) as entries:
            for entry in entries:
                if entry.is_dir(follow_symlinks=False):
                    stack.append(Path(entry.path))
                elif entry.is_symlink() or not entry.is_file(follow_symlinks=False):
                    what = "a symbolic link" if entry.is_symlink() else "not a regular file (a pipe, device or socket)"
                    return f"{Path(entry.path).relative_to(folder).as_posix()} is {what}"
    return None


def has_manifest(folder: Path) -> bool:
    return (folder / MANIFEST).exists()


def manifest_files(folder: Path) -> set[str]:
    """Relative paths the manifest lists (empty for a legacy checkpoint)."""
    try:
        return {e["path"] for e in json.loads((folder / MANIFEST).read_text(encoding="utf-8"))["files"]}
    except (OSError, ValueError, KeyError, TypeError):
        return set()


def problem(folder: Path) -> str | None:
    """What is wrong with checkpoint `folder` against its manifest, or None if nothing is.
    A legacy folder (no manifest) has nothing to check against: None."""
    path = folder / MANIFEST
    if not path.exists():
        return None
    try:
        st = path.stat()
        key = (str(folder.resolve()), st.st_ino, st.st_size, st.st_mtime_ns)
        if key in _verified:
            return None
        manifest = json.loads(path.read_text(encoding="utf-8"))
        entries = {e["path"]: (int(e["size"]), str(e["sha256"])) for e in manifest["files"]}
    except (OSError, ValueError, KeyError, TypeError, AttributeError, UnicodeDecodeError):
        return f"its {MANIFEST} is unreadable"
    # An empty or partial list would verify nothing: a save always lists its DCP index.
    if ".metadata" not in entries:
        return f"its {MANIFEST} does not list .metadata (an empty or forged file list)"
    for rel in entries:
        if rel.startswith("/") or ".." in Path(rel).parts:
            return f"its {MANIFEST} names a file outside the checkpoint ('{rel}')"
    present = {p.relative_to(folder).as_posix(): p for p in _files(folder)}
    for rel, (size, digest) in entries.items():
        p = present.get(rel)
        if p is None:
            return f"file {rel} is missing"
        actual = p.stat().st_size
        if actual != size:
            return f"file {rel} has {actual} bytes, the manifest says {size}"
    unlisted = sorted(set(present) - set(entries))
    if unlisted:
        return f"file {unlisted[0]} is not in its {MANIFEST}"
    for rel, (_, digest) in entries.items():
        if _sha256(present[rel]) != digest:
            return f"file {rel} does not match its sha256 in the manifest (corrupted)"
    _verified.add(key)
    return None
