"""Examples packed whole into windows (supervised fine-tuning data, bltx/data/sft.py).

Plain documents are cut into windows anywhere (bltx/data/windows.py). An example cut that
way loses its prompt in the second window, so examples are packed instead: consecutive
examples go into one window while they fit in its T + 1 ids (inputs T, targets shifted by
one), and the rest of the window is padding (PAD inputs, IGNORE_ID targets). An example
longer than a window fills windows of its own, each starting on the last id of the one
before (every byte is still predicted once), and its tail is packed with what follows.
Which examples share a window depends only on their lengths, known from the index, so
windows are positions in the stream as before and sampling, splits and resume are
unchanged.

Trained targets: with `data.loss_on = "completion"` the completion bytes (the mask stream,
bltx/data/sft.py) and the EOS right after a completion byte; with "all" every byte and
EOS. BOS targets (the step from one example to the next) and padding are never trained.
"""

from __future__ import annotations

import numpy as np

from bltx.bytes import EOS_ID, OFFSET, PAD_ID
from bltx.data.stream import IdStream, StreamView
from bltx.data.windows import Windows
from bltx.errors import DataError


def document_starts(stream: IdStream, start: int, end: int) -> np.ndarray:
    """Stream positions where a document's layout ([BOS] bytes EOS) begins, in [start, end)."""
    out = []
    for f, file in enumerate(stream.docs):
        file_start = int(stream.ends[f] - stream.file_lens[f])
        if file_start >= end or stream.ends[f] <= start:
            continue
        lengths = (file.index.rows[:, 1] if file.num_docs > 1 else np.array([len(file)])) + stream.per_doc
        out.append(file_start + np.concatenate([[0], np.cumsum(lengths)[:-1]]))
    starts = np.concatenate(out) if out else np.empty(0, dtype=np.int64)
    return starts[(starts >= start) & (starts < end)].astype(np.int64)


def split_examples(stream: IdStream, validation_fraction: float, start: int,
                   end: int) -> tuple[StreamView, StreamView | None, np.ndarray]:
    """Like bltx/data/stream.py `split_stream`, but the validation tail begins on an example,
    so no example is in both splits. Also returns the examples' starts in [start, end)."""
    starts = document_starts(stream, start, end)
    if validation_fraction <= 0 or len(starts) < 2:
        return StreamView(stream, start, end), None, starts
    want = end - (end - start) * validation_fraction
    cut = int(starts[1:][np.argmin(np.abs(starts[1:] - want))])  # at least one training example
    return StreamView(stream, start, cut), StreamView(stream, cut, end), starts


def pack(bounds: np.ndarray, length: int, seq_len: int) -> np.ndarray:
    """Windows [lo, hi) of at most seq_len + 1 ids over a view of `length` ids whose
    examples begin at `bounds` (relative to the view, bounds[0] == 0): [n, 2] int64."""
    cap = seq_len + 1
    ends = [*bounds[1:].tolist(), length]
    spans, cur, prev = [], 0, 0
    for e in ends:  # prev: where the example ending at e begins
        if e - cur > cap:
            if prev > cur:  # close the window before this example
                spans.append((cur, prev))
                cur = prev
            while e - cur > cap:  # a long example: full windows of its own
                spans.append((cur, cur + cap))
                cur += seq_len
        prev = e
    if length - cur > 1:  # a window of one id would have no target
        spans.append((cur, length))
    return np.array(spans, dtype=np.int64).reshape(-1, 2)


class PackedWindows(Windows):
    """Windows of whole examples over a stream view (see module doc). `window(i)` gives
    (ids [T+1], entropies [T] or None, trained [T+1] bool: does the target at that id count)."""

    def __init__(self, view: StreamView, seq_len: int, starts: np.ndarray, name: str = "train",
                 mask_view: StreamView | None = None):
        self.view = view
        self.seq_len = seq_len
        self.name = name
        self.mask_view = mask_view  # None: every byte and EOS is trained (loss_on = "all")
        bounds = starts[(starts >= view.start) & (starts < view.end)] - view.start
        if not len(bounds) or bounds[0] != 0:
            bounds = np.concatenate([[0], bounds])
        self.spans = pack(bounds, len(view), seq_len)
        if not len(self.spans):
            raise DataError(f"the {name} split has no example with a byte to predict; add examples"
                            + (" or raise data.validation_fraction" if name.startswith("validation") else ""))

    def __len__(self) -> int:
        return len(self.spans)

    def window(self, index: int) -> tuple[np.ndarray, np.ndarray | None, np.ndarray]:
        lo, hi = (int(v) for v in self.spans[index])
        n, T = hi - lo, self.seq_len
        ids = np.full(T + 1, PAD_ID, dtype=np.int64)
        ids[:n] = self.view.read(lo, n)
        trained = np.zeros(T + 1, dtype=bool)
        if self.mask_view is None:
            trained[:n] = (ids[:n] >= OFFSET) | (ids[:n] == EOS_ID)
        else:
            completion = self.mask_view.read(lo, n) == OFFSET + 1  # mask byte 1 (bltx/data/sft.py)
            trained[:n] = completion
            trained[1:n] |= (ids[1:n] == EOS_ID) & completion[:-1]  # the EOS ending a completion
        ent = self.view.read_entropies(lo, min(n, T))
        if ent is not None and len(ent) < T:
            ent = np.pad(ent, (0, T - len(ent)))
        return ids, ent, trained
