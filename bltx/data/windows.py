"""Fixed-length windows over a stream view: inputs ids[i : i+T], targets ids[i+1 : i+T+1].

Windows start every `seq_len` positions, so consecutive windows share one id (the last
target of window k is the first input of window k+1) and every position is predicted once
per epoch.
"""

from __future__ import annotations

import numpy as np
import torch

from bltx.data.stream import StreamView
from bltx.errors import DataError


class Windows:
    """Indexable fixed-length training examples over a `StreamView`."""

    def __init__(self, view: StreamView, seq_len: int, name: str = "train"):
        self.view = view
        self.seq_len = seq_len
        self.name = name
        if len(view) < seq_len + 1:
            raise DataError(
                f"the {name} split has {len(view)} ids (bytes plus BOS/EOS), fewer than one "
                f"window of data.seq_len + 1 = {seq_len + 1}; lower data.seq_len or add data"
                + (" or raise data.validation_fraction" if name == "validation" else "")
            )

    def __len__(self) -> int:
        return (len(self.view) - 1) // self.seq_len

    def window(self, index: int) -> tuple[np.ndarray, np.ndarray | None]:
        start = index * self.seq_len
        ids = self.view.read(start, self.seq_len + 1)
        return ids, self.view.read_entropies(start, self.seq_len)

    def batch(self, indices: list[int] | np.ndarray) -> dict[str, torch.Tensor]:
        """Stack windows into {"ids": [B,T] long, "targets": [B,T] long, "entropies"?: [B,T]}."""
        rows, ents = [], []
        for i in indices:
            ids, ent = self.window(int(i))
            rows.append(ids)
            ents.append(ent)
        arr = torch.from_numpy(np.stack(rows))
        out = {"ids": arr[:, :-1].contiguous(), "targets": arr[:, 1:].contiguous()}
        if ents and ents[0] is not None:
            out["entropies"] = torch.from_numpy(np.stack(ents))
        return out
