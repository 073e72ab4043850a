"""One run per dump folder: an exclusive lock on `job.dump_dir/run.lock`.

Two runs sharing a dump folder both resume from the same checkpoint, write the same step
folders and interleave `metrics.jsonl`; neither can tell. The lock is an `flock` on an open
file, so the kernel releases it when the holding process exits however it exits (a crash,
SIGKILL, a dead node's process): a lock file left behind by a dead run never blocks, it is
taken over with a notice. The file holds who holds it (pid, host, start time), which a
refused run names. Only the first rank of a launch takes it: the ranks of one run share
the folder by design.
"""

from __future__ import annotations

import fcntl
import os
import socket
import time
from pathlib import Path
from typing import IO, Callable

from bltx.errors import ConfigError
from bltx.checkpoint.weights import warn

LOCK = "run.lock"


class RunLock:
    """Held from `acquire` until `release` (or the process's end)."""

    def __init__(self, file: IO[str]):
        self.file = file

    @classmethod
    def acquire(cls, dump_dir: str | os.PathLike, log: Callable[[str], None] = warn) -> "RunLock":
        folder = Path(dump_dir)
        folder.mkdir(parents=True, exist_ok=True)
        file = open(folder / LOCK, "a+", encoding="utf-8")
        try:
            fcntl.flock(file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            file.seek(0)
            holder = file.read().strip() or "a process that has not yet written its name"
            file.close()
            raise ConfigError(
                f"job.dump_dir {folder} is in use by another run ({holder}); wait for it to "
                f"finish or stop it, or set job.dump_dir to another folder"
            ) from None
        file.seek(0)
        previous = file.read().strip()
        if previous:  # a clean release empties the file: this one's holder died holding it
            log(f"taking over {folder / LOCK} from a run that is no longer running ({previous})")
        file.seek(0)
        file.truncate()
        stamp = time.strftime("%Y-%m-%d %H:%M:%S")
        file.write(f"pid {os.getpid()} on {socket.gethostname()} since {stamp}\n")
        file.flush()
        return cls(file)

    def release(self) -> None:
        if self.file.closed:
            return
        self.file.seek(0)
        self.file.truncate()
        self.file.flush()
        fcntl.flock(self.file, fcntl.LOCK_UN)
        self.file.close()
