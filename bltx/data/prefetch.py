"""Background prefetch of train batches, without giving up exact resume.

The training loop's sampler stays the authority on the data position: each step it advances
it as if it read synchronously, so `state_dict()` is always the position of the batches
actually consumed. A thread runs a copy of the sampler ahead, reading up to `depth` batches
into a queue (the reads release the GIL: file reads, decompression, Arrow decoding), and
each batch it hands over carries the windows it holds, checked against the loop's own.
A thread whose queue stays full for `IDLE_S` (its loop has gone: a finished trainer) ends;
the next batch asked for then starts a new one from the loop's position.
"""

from __future__ import annotations

import copy
import queue
import threading
import time
from typing import Callable

import numpy as np

IDLE_S = 60.0


class Prefetcher:
    """Reads `read(sampler.next_pairs())` ahead on a daemon thread, `depth` batches deep."""

    def __init__(self, sampler, read: Callable[[np.ndarray], dict], depth: int):
        self.sampler = copy.deepcopy(sampler)  # the thread's own copy, at the loop's position
        self.read = read
        self.queue: queue.Queue = queue.Queue(maxsize=depth)
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, name="bltx-prefetch", daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while not self.stop.is_set():
            try:
                pairs = self.sampler.next_pairs()
                item = (pairs, self.read(pairs), None)
            except BaseException as exc:  # handed to the loop, raised there
                item = (None, None, exc)
            since = time.monotonic()
            while not self.stop.is_set():
                try:
                    self.queue.put(item, timeout=0.1)
                    break
                except queue.Full:
                    if time.monotonic() - since > IDLE_S:
                        return
            if item[2] is not None:
                return

    def next(self, pairs: np.ndarray) -> dict | None:
        """The batch for `pairs` (the loop's own draw); None if the thread read other
        windows or has ended (then the caller reads them itself and starts a new one)."""
        while True:
            try:
                got, batch, exc = self.queue.get(timeout=1.0)
                break
            except queue.Empty:
                if not self.thread.is_alive():
                    return None
        if exc is not None:
            raise exc
        return batch if np.array_equal(got, pairs) else None

    def close(self) -> None:
        self.stop.set()
        while True:  # free a put waiting on a full queue
            try:
                self.queue.get_nowait()
            except queue.Empty:
                break
        self.thread.join(timeout=5)
