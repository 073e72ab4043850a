"""Per-position entropies stored beside the data, for precomputed entropy patching.

The file is a `.npy` array of float16, one value per position of the id stream of
`data.paths` (BOS/EOS included), aligned like the `entropies` argument of a patcher: value
p belongs to the id at stream position p. A JSON sidecar (`<file>.json`) records the stream
length and the files it was computed from, so stale entropies fail loudly instead of
silently misaligning.

The file is read like a data file, not memory-mapped: its `.npy` header is checked (a
1-D float16 array, the file exactly as long as the header says) and each window's values
are read with `os.pread` through bltx/data/sources.py, which checks size and mtime on every
read. A file truncated under a run is then one DataError line, never a SIGBUS.
"""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from bltx.data.sources import DiskFile, open_bytes
from bltx.data.stream import IdStream
from bltx.errors import DataError


def fingerprint(stream: IdStream, producer: dict | None = None) -> dict:
    """What the stored entropies depend on: the data and (`producer`) the entropy model."""
    return {
        "length": len(stream),
        "add_bos": bool(stream.bos),
        "files": [{"name": d.path.name, "size": len(d)} for d in stream.docs],
        "producer": producer or {},
    }


def producer_of(patcher_table: dict | None) -> dict:
    """The entropy model behind a patcher table: its config and weights file (by size)."""
    table = patcher_table or {}
    ckpt = table.get("checkpoint")
    size = Path(ckpt).stat().st_size if ckpt and Path(ckpt).is_file() else None
    return {"model": table.get("model"), "checkpoint": ckpt, "checkpoint_bytes": size}


class StoredEntropies:
    """The values of an entropies file, read on demand: `values[a:b]` -> float16 array."""

    def __init__(self, file: DiskFile, offset: int, length: int):
        self.file = file
        self.offset = offset
        self.shape = (length,)
        self.ndim = 1

    def __len__(self) -> int:
        return self.shape[0]

    def __getitem__(self, window: slice) -> np.ndarray:
        lo, hi, _ = window.indices(len(self))
        hi = max(lo, hi)
        return self.file.read(self.offset + 2 * lo, self.offset + 2 * hi).view(np.float16)


def read_entropies_file(path: Path) -> StoredEntropies:
    """Open a stored entropies file after checking that it is one (DataError otherwise)."""
    def bad(problem: str) -> DataError:
        return DataError(f"data.entropies_path {path} {problem}; recompute it with "
                         f"`python -m bltx.run RECIPE --set job.task=precompute_entropies`")

    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise bad("not found") from None
    except OSError as exc:
        raise bad(f"cannot be read ({exc.strerror})") from None
    if not stat.S_ISREG(st.st_mode):
        raise bad("is not a regular file (a folder, pipe, device or socket)")
    try:
        with open(path, "rb") as f:
            major, _ = np.lib.format.read_magic(f)
            read_header = np.lib.format.read_array_header_1_0 if major == 1 else np.lib.format.read_array_header_2_0
            shape, fortran, dtype = read_header(f)
            offset = f.tell()
    except (ValueError, OSError, EOFError, SyntaxError, TypeError):
        raise bad("is not a .npy array file") from None
    if dtype.hasobject or dtype != np.dtype("<f2") or fortran or len(shape) != 1:
        raise bad(f"holds a {dtype} array of shape {list(shape)}, not a 1-D float16 array")
    if st.st_size != offset + 2 * shape[0]:
        raise bad(f"has {st.st_size} bytes, its header says {offset + 2 * shape[0]} (truncated or extended)")
    return StoredEntropies(open_bytes(path), offset, shape[0])


def open_entropies(path: Path, stream: IdStream, producer: dict | None = None) -> StoredEntropies:
    """The entropies for `stream`, checked; DataError when missing, damaged or stale."""
    arr = read_entropies_file(path)
    if arr.shape[0] != len(stream):
        raise DataError(
            f"{path} holds {arr.shape[0] if arr.ndim == 1 else arr.shape} entropies but the data "
            f"stream has {len(stream)} positions; recompute it for these data.paths"
        )
    meta_path = Path(f"{path}.json")
    if meta_path.is_file():
        try:
            saved = json.loads(meta_path.read_text(encoding="utf-8"))
            if not isinstance(saved, dict):
                raise ValueError
        except (OSError, ValueError):
            raise DataError(f"{meta_path} is damaged (not a JSON object); recompute {path}") from None
        now = fingerprint(stream, producer)
        if {k: v for k, v in saved.items() if k != "producer"} != {k: v for k, v in now.items() if k != "producer"}:
            raise DataError(f"{path} was computed for other data files; recompute it for these data.paths")
        if producer is not None and saved.get("producer") != now["producer"]:
            raise DataError(f"{path} was computed with another entropy model than model.patcher's; recompute it")
    return arr


@torch.no_grad()
def compute_entropies(
    stream: IdStream,
    entropy_fn: Callable[[torch.Tensor], torch.Tensor],
    chunk: int,
    context: int,
    batch_size: int = 8,
    device: str | torch.device = "cpu",
    progress: Callable[[int, int], None] | None = None,
) -> np.ndarray:
    """Run `entropy_fn(ids [B, L]) -> [B, L]` over the whole stream in overlapping chunks.

    Chunk k covers positions [k*chunk, (k+1)*chunk) and is fed `context` earlier ids too
    (kept out of the result), so every position sees at least `context` ids of history
    when the stream has them: close to what the patcher sees inside a training window.
    """
    n = len(stream)
    out = np.empty(n, dtype=np.float16)
    starts = list(range(0, n, chunk))
    span = chunk + context
    for b in range(0, len(starts), batch_size):
        group = starts[b : b + batch_size]
        rows, keep = [], []
        for s in group:
            lo = max(0, s - context)
            hi = min(n, s + chunk)
            ids = stream.read(lo, hi - lo)
            # Right-pad to a common length; padded positions are discarded below and, the
            # model being causal, cannot affect the kept ones.
            rows.append(np.pad(ids, (0, span - len(ids)), constant_values=0))
            keep.append((s - lo, hi - s))
        ids = torch.from_numpy(np.stack(rows)).to(device)
        ent = entropy_fn(ids).float().cpu().numpy()
        for row, s, (skip, length) in zip(ent, group, keep):
            out[s : s + length] = row[skip : skip + length]
        if progress is not None:
            progress(min(b + batch_size, len(starts)), len(starts))
    return out


def save_entropies(path: Path, values: np.ndarray, stream: IdStream, producer: dict | None = None) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp.npy")  # one per process: writers may race
    np.save(tmp, values.astype(np.float16))
    tmp.replace(path)
    Path(f"{path}.json").write_text(json.dumps(fingerprint(stream, producer), indent=1) + "\n")
