"""Fixed-length windows over a stream view: inputs ids[i : i+T], targets ids[i+1 : i+T+1].

Windows start every `seq_len` positions, so consecutive windows share one id (the last
target of window k is the first input of window k+1) and every position is predicted once
per epoch.
"""

from __future__ import annotations

import numpy as np
import torch

from bltx.bytes import EOS_ID, IGNORE_ID
from bltx.data.stream import StreamView
from bltx.errors import DataError


class Windows:
    """Indexable fixed-length training examples over a `StreamView`."""

    doc_ids = False  # batches carry "doc_ids" (data.document_mask; the loader sets it)

    def __init__(self, view: StreamView, seq_len: int, name: str = "train"):
        self.view = view
        self.seq_len = seq_len
        self.name = name
        if len(view) < seq_len + 1:
            raise DataError(
                f"the {name} split has {len(view)} ids (bytes plus BOS/EOS), fewer than one "
                f"window of data.seq_len + 1 = {seq_len + 1}; lower data.seq_len or add data"
                + (" or raise data.validation_fraction" if name.startswith("validation") else "")
            )

    def __len__(self) -> int:
        return (len(self.view) - 1) // self.seq_len

    def window(self, index: int) -> tuple[np.ndarray, np.ndarray | None]:
        start = index * self.seq_len
        ids = self.view.read(start, self.seq_len + 1)
        return ids, self.view.read_entropies(start, self.seq_len)

    def batch(self, indices: list[int] | np.ndarray) -> dict[str, torch.Tensor]:
        """Stack windows into {"ids": [B,T] long, "targets": [B,T] long, "entropies"?: [B,T]}."""
        return stack_windows([self.window(int(i)) for i in indices], self.doc_ids)


class ConcatWindows(Windows):
    """Several sources' windows indexed one after another (a mixture's validation splits)."""

    def __init__(self, parts: list[Windows], name: str = "validation"):
        self.parts = parts
        self.seq_len = parts[0].seq_len
        self.name = name
        self.ends = np.cumsum([len(p) for p in parts])
        self.view = _ConcatView([p.view for p in parts])
        self.doc_ids = parts[0].doc_ids

    def __len__(self) -> int:
        return int(self.ends[-1])

    def window(self, index: int) -> tuple[np.ndarray, np.ndarray | None]:
        part = int(np.searchsorted(self.ends, index, side="right"))
        return self.parts[part].window(index - (int(self.ends[part - 1]) if part else 0))


class _ConcatView:
    """The parts' stream views one after another (reads may cross from one to the next)."""

    def __init__(self, views: list):
        self.views = views
        self.ends = np.cumsum([len(v) for v in views])

    def __len__(self) -> int:
        return int(self.ends[-1])

    def read(self, offset: int, length: int) -> np.ndarray:
        out, pos = [], offset
        while pos < offset + length:
            k = int(np.searchsorted(self.ends, pos, side="right"))
            start = int(self.ends[k - 1]) if k else 0
            take = min(offset + length, int(self.ends[k])) - pos
            out.append(self.views[k].read(pos - start, take))
            pos += take
        return np.concatenate(out) if out else np.empty(0, dtype=np.int64)


def stack_windows(windows: list[tuple], doc_ids: bool = False) -> dict[str, torch.Tensor]:
    """(ids [T+1], entropies [T] or None[, trained [T+1] bool]) per window -> a batch of
    shifted pairs. Targets not trained on (bltx/data/packing.py) become IGNORE_ID. With
    `doc_ids`, "doc_ids" [B, T] numbers the documents of each window's inputs: a document
    ends at its EOS, so padding after the last one is a document of its own."""
    arr = torch.from_numpy(np.stack([w[0] for w in windows]))
    out = {"ids": arr[:, :-1].contiguous(), "targets": arr[:, 1:].contiguous()}
    if windows and windows[0][1] is not None:
        out["entropies"] = torch.from_numpy(np.stack([w[1] for w in windows]))
    if windows and len(windows[0]) > 2:
        trained = torch.from_numpy(np.stack([w[2] for w in windows]))[:, 1:]
        out["targets"] = torch.where(trained, out["targets"], IGNORE_ID)
    if doc_ids:
        ends = (out["ids"] == EOS_ID).long()
        out["doc_ids"] = ends.cumsum(1) - ends  # EOS belongs to the document it ends
    return out
