"""Local attention micro-benchmark: dense masks (the reference) against the fast paths.

Times forward + backward of one attention call (q, k, v -> out; grads of q, k, v) for:
  - window: sliding-window byte self-attention, dense [T, T] mask vs blocked (T x 2W)
  - encoder: patch queries over their patch's bytes, dense [P*k, T] mask vs PatchQueries
  - decoder: bytes over one patch's k keys, dense [T, P*k] mask vs PatchKeys
Masks and layouts are built outside the timed loop: a forward builds them once and every
layer reuses them. `model uses`: the path the sdpa backend picks at that size (blocks only
pay once 2 x window < T). Prints a table and writes JSON (rows[].op/T/window/dense_ms/fast_ms).

    python tools/bench_attention.py                        # T 1024/2048, windows 128/512, d 256
    python tools/bench_attention.py --seq-lens 512 --reps 3 --out /tmp/bench_attention.json
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bltx.model.attention import SdpaBackend  # noqa: E402
from bltx.model.local_encoder import patch_query_groups  # noqa: E402
from bltx.model.patch_attention import PatchKeys, PatchQueries  # noqa: E402
from bltx.model.window_attention import blocked_window_mask, use_blocked, window_mask  # noqa: E402
from bltx.patching.base import starts_to_patch_ids  # noqa: E402


def time_pair(dense, fast, q, k, v, reps: int, warmup: int = 2) -> tuple[float, float]:
    """Milliseconds of fn(q, k, v).sum().backward() for both functions, run alternately
    and the fastest of `reps` kept: on a shared machine both see the same disturbance,
    and the minimum is the least disturbed run."""
    times = ([], [])
    for i in range(warmup + reps):
        for fn, acc in zip((dense, fast), times):
            for x in (q, k, v):
                x.grad = None
            start = time.perf_counter()
            fn(q, k, v).sum().backward()
            if i >= warmup:
                acc.append(time.perf_counter() - start)
    return 1e3 * min(times[0]), 1e3 * min(times[1])


def row(op, T, window, dense, fast, qkv, reps, **extra) -> dict:
    dense_ms, fast_ms = time_pair(dense, fast, *qkv, reps)
    return {"op": op, "T": T, "window": window, **extra, "dense_ms": dense_ms, "fast_ms": fast_ms}


def tensors(B, H, Lq, Lkv, D, seed=0):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(B, H, L, D, generator=g).requires_grad_() for L in (Lq, Lkv, Lkv)]


def patch_ids_of(B, T, mean_len: float, seed=0):
    g = torch.Generator().manual_seed(seed)
    starts = torch.rand(B, T, generator=g) < 1 / mean_len
    starts[:, 0] = True
    return starts_to_patch_ids(starts)


def rows_for(T: int, windows, args) -> list[dict]:
    B, H, D, K = args.batch, args.heads, args.dim // args.heads, args.k
    sdpa = SdpaBackend()
    rows = []
    for W in windows:
        dense = window_mask(T, W, "cpu")
        rows.append(row("window", T, W, lambda q, k, v: F.scaled_dot_product_attention(q, k, v, attn_mask=dense),
                        blocked_window_mask(T, W, "cpu").attend, tensors(B, H, T, T, D), args.reps,
                        model_uses="fast" if use_blocked(T, W) else "dense"))
    ids = patch_ids_of(B, T, args.patch_len)
    P = int(ids.max()) + 1
    slots = patch_query_groups(B, P, K, "cpu")
    enc_dense = sdpa.group_mask(slots, ids)
    rows.append(row("encoder", T, None, lambda q, k, v: sdpa.attend(q, k, v, enc_dense),
                    PatchQueries.build(ids, P, K).attend, tensors(B, H, P * K, T, D), args.reps, P=P))
    dec_dense = sdpa.group_mask(ids - 1, slots)
    rows.append(row("decoder", T, None, lambda q, k, v: sdpa.attend(q, k, v, dec_dense),
                    PatchKeys.build(ids - 1, P, K).attend, tensors(B, H, T, P * K, D), args.reps, P=P))
    return rows


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seq-lens", type=int, nargs="+", default=[1024, 2048])
    parser.add_argument("--windows", type=int, nargs="+", default=[128, 512])
    parser.add_argument("--dim", type=int, default=256)
    parser.add_argument("--heads", type=int, default=4)
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--k", type=int, default=2, help="cross_attn_k")
    parser.add_argument("--patch-len", type=float, default=4.0, help="mean patch length")
    parser.add_argument("--reps", type=int, default=5)
    # Under CPU contention a 2-thread OpenMP region can stall for ~100x its run time
    # (observed on a shared 2-core VM); --threads 1 gives stable numbers there.
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads")
    parser.add_argument("--out", default="runs/bench_attention.json")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    rows = [row for T in args.seq_lens for row in rows_for(T, args.windows, args)]
    machine = f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} threads"
    print(f"CPU fp32 forward+backward, batch {args.batch}, d {args.dim} ({args.heads} heads), "
          f"k {args.k}, mean patch length {args.patch_len}; {machine}")
    print(f"{'op':8s} {'T':>5s} {'window':>6s} {'dense ms':>9s} {'fast ms':>8s} {'speed-up':>8s}  model uses")
    for r in rows:
        r["speedup"] = r["dense_ms"] / r["fast_ms"]
        print(f"{r['op']:8s} {r['T']:5d} {str(r['window'] or '-'):>6s} {r['dense_ms']:9.2f} "
              f"{r['fast_ms']:8.2f} {r['speedup']:7.2f}x  {r.get('model_uses', 'fast')}")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"device": "cpu", "dtype": "float32", "machine": machine,
                               "args": vars(args), "rows": rows}, indent=2) + "\n")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
