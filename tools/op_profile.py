"""Where a training step's time goes by kind of kernel: GEMMs, attention kernels, the
optimizer's kernel, and everything else (elementwise math, copies, Python and framework
overhead).

The split says how much a compiler can win. Inductor calls GEMMs (MKL / cuBLAS) and SDPA's
attention kernels as they are, and the trainer does not compile the (already fused)
optimizer step; what a compiler fuses is the rest. So a compiled step can be at most
`eager step time / (GEMM + attention + optimizer seconds)` times faster than eager (the
step time measured without the profiler, the kernel seconds under it): the compile ceiling
that `bench_train.py` prints next to the measured compiled/eager ratio. The shares printed
per row are of the profiled step's wall time, which includes the profiler's own cost.

CPU only: on CUDA the kernels run asynchronously under their libraries' names, which the
operator names below do not classify.
"""

from __future__ import annotations

import time

from torch.profiler import ProfilerActivity, profile

FIXED_KINDS = ("gemm", "attention", "optimizer")
# Operator self times, so wrappers such as aten::linear count only their own overhead.
GEMM_OPS = {"aten::mm", "aten::addmm", "aten::bmm", "aten::baddbmm", "aten::_scaled_mm"}
ATTENTION_MARKERS = ("scaled_dot_product", "flash_attention", "efficient_attention")
OPTIMIZER_MARKERS = ("_fused_adam", "_foreach_")


def kind_of(name: str) -> str:
    """"gemm", "attention", "optimizer" or "other" for a profiler operator name."""
    if name in GEMM_OPS:
        return "gemm"
    if any(marker in name for marker in ATTENTION_MARKERS):
        return "attention"
    if any(marker in name for marker in OPTIMIZER_MARKERS):
        return "optimizer"
    return "other"


def kernel_split(step, steps: int = 2) -> dict[str, float]:
    """Seconds per call of `step` (CPU, under the profiler) in GEMM, attention and optimizer
    kernels, and "other": the rest of the profiled wall time. Shares are read within this
    one profiled run; the profiler's own per-operator cost lands in "other"."""
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        start = time.perf_counter()
        for _ in range(steps):
            step()
        wall = (time.perf_counter() - start) / steps
    seconds = dict.fromkeys(FIXED_KINDS, 0.0)
    for event in prof.key_averages():
        kind = kind_of(event.key)
        if kind != "other":
            seconds[kind] += event.self_cpu_time_total / 1e6 / steps
    seconds["other"] = max(0.0, wall - sum(seconds.values()))
    return seconds


def compile_ceiling(step_s: float, split: dict[str, float]) -> float:
    """The most a compiler that leaves GEMMs, attention and the optimizer as they are could
    speed up a step measured at `step_s` seconds (without the profiler) whose kernels
    `split` timed: it could at best remove everything else."""
    kept = sum(split[kind] for kind in FIXED_KINDS)
    return max(1.0, step_s / kept) if kept > 0 else float("inf")
