"""Training metrics: a console line per log step, TensorBoard scalars, a JSON-lines file, and
a progress bar.

Everything goes under the run's dump folder: `tb/` for TensorBoard, `metrics.jsonl` with one
record per logged step (floats written exactly, so tests and scripts can compare runs
bit for bit). Only rank 0 writes; other ranks get a logger that does nothing.
"""

from __future__ import annotations

import json
import math
import sys
import time
from pathlib import Path

# Console names and formats; keys not listed are printed with a generic format.
_FORMATS = {
    "loss": ("loss", "{:.4f}"),
    "bpb": ("bpb", "{:.4f}"),
    "val_bpb": ("val_bpb", "{:.4f}"),
    "val_loss": ("val_loss", "{:.4f}"),
    "val_mean_patch_length": ("val_patch_len", "{:.2f}"),
    "bytes_per_s": ("bytes/s", "{}"),
    "patches_per_s": ("patches/s", "{}"),
    "mean_patch_length": ("patch_len", "{:.2f}"),
    "lr": ("lr", "{:.2e}"),
    "grad_norm": ("gnorm", "{:.3f}"),
}


def human(x: float) -> str:
    for unit, scale in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(x) >= scale:
            return f"{x / scale:.1f}{unit}"
    return f"{x:.0f}"


def format_line(step: int, total: int, scalars: dict[str, float]) -> str:
    parts = [f"step {step:>{len(str(total))}}/{total}"]
    for key, value in scalars.items():
        if value is None:  # not measured this window (e.g. patches of a non-BLT model)
            continue
        name, fmt = _FORMATS.get(key, (key, "{:.4g}"))
        if isinstance(value, float) and not math.isfinite(value):
            text = str(value)  # nan / inf shown, never dropped: a diverged run must be visible
        else:
            text = human(value) if key.endswith("_per_s") else fmt.format(value)
        parts.append(f"{name} {text}")
    return " | ".join(parts)


class ProgressBar:
    """A one-line bar on stderr, redrawn in place; silent when stderr is not a terminal."""

    def __init__(self, total: int, enabled: bool = True, width: int = 30):
        self.total = max(1, total)
        self.enabled = enabled and sys.stderr.isatty()
        self.width = width
        self.t0 = time.perf_counter()

    def update(self, step: int, note: str = "") -> None:
        if not self.enabled:
            return
        frac = min(1.0, step / self.total)
        filled = int(frac * self.width)
        elapsed = time.perf_counter() - self.t0
        bar = "#" * filled + "-" * (self.width - filled)
        sys.stderr.write(f"\r[{bar}] {step}/{self.total} {elapsed:6.0f}s {note}\x1b[K")
        sys.stderr.flush()

    def clear(self) -> None:
        if self.enabled:
            sys.stderr.write("\r\x1b[K")
            sys.stderr.flush()

    def close(self) -> None:
        if self.enabled:
            sys.stderr.write("\n")
            sys.stderr.flush()


class MetricLogger:
    """Writes scalars to the console, TensorBoard and `metrics.jsonl` (rank 0 only)."""

    def __init__(self, dump_dir: Path, total_steps: int, enabled: bool = True,
                 tensorboard: bool = True, progress_bar: bool = True):
        self.enabled = enabled
        self.total = total_steps
        self.bar = ProgressBar(total_steps, enabled and progress_bar)
        self.writer = None
        self.jsonl = None
        if not enabled:
            return
        dump_dir.mkdir(parents=True, exist_ok=True)
        self.jsonl = open(dump_dir / "metrics.jsonl", "a", encoding="utf-8")
        if tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError:  # tensorboard is a dependency, but do not die without it
                print("warning: tensorboard not installed; scalars go to metrics.jsonl only", file=sys.stderr)
            else:
                self._tensorboard(lambda: setattr(self, "writer", SummaryWriter(str(dump_dir / "tb"))))

    def _tensorboard(self, call) -> None:
        """Run a TensorBoard call; if it fails (a full disk, a vanished folder) say so in one
        line and go on without TensorBoard: scalars still reach metrics.jsonl, and a failed
        event file must not turn a save error or a resume into a traceback."""
        try:
            call()
        except Exception as exc:  # tensorboard re-raises its writer thread's errors here
            reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc).splitlines()[0]
            print(f"warning: TensorBoard disabled for this run: {reason}; scalars go to metrics.jsonl only",
                  file=sys.stderr, flush=True)
            writer, self.writer = self.writer, None
            if writer is not None:
                try:
                    writer.close()
                except Exception:
                    pass

    def log(self, step: int, scalars: dict[str, float], split: str = "train", console: bool = True) -> None:
        if not self.enabled:
            return
        if console:
            self.bar.clear()
            prefix = "" if split == "train" else f"[{split}] "
            print(prefix + format_line(step, self.total, scalars), flush=True)
        if self.writer is not None:
            self._tensorboard(lambda: [self.writer.add_scalar(f"{split}/{key}", value, step)
                                       for key, value in scalars.items() if value is not None])
        self.jsonl.write(json.dumps({"split": split, "step": step, **scalars}) + "\n")
        self.jsonl.flush()

    def progress(self, step: int, note: str = "") -> None:
        if self.enabled:
            self.bar.update(step, note)

    def message(self, text: str) -> None:
        if self.enabled:
            self.bar.clear()
            print(text, flush=True)

    def error(self, text: str) -> None:
        """One line on stderr, `error: ...`, as every failure bltx reports."""
        if self.enabled:
            self.bar.clear()
            print(f"error: {text}", file=sys.stderr, flush=True)

    def close(self) -> None:
        if not self.enabled:
            return
        self.bar.close()
        if self.writer is not None:
            self._tensorboard(self.writer.close)
        if self.jsonl is not None:
            self.jsonl.close()
