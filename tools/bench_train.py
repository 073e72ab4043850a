"""Training throughput: bltx eager fp32, bltx compiled, bltx compiled bf16, and Hugging Face
`BltForCausalLM` with the same weights (via bltx.interop.hf) and the same patch lengths.

One training step = forward + backward + AdamW step on one batch. Each row reports bytes/s
and the achieved FLOP/s (the model's training FLOPs per byte from bltx.eval.flops times
bytes/s) as a fraction of this machine's measured matmul peak in the row's dtype. All rows
run in one process on the same machine, so the ratios are what to read. Prints a table and
writes JSON.

    python tools/bench_train.py                 # tiny-recipe shapes, seq 512, batch 4
    python tools/bench_train.py --steps 5 --rounds 2 --seq-len 256 --out /tmp/bench_train.json
    python tools/bench_train.py --device cuda --shape 1b --seq-len 4096 --batch 2   # on a GPU
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import bltx  # noqa: E402
from bltx.config import load_recipe  # noqa: E402
from bltx.eval.flops import flops_per_byte  # noqa: E402
from bltx.patching.base import starts_to_lengths  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
SHAPES = {"tiny": ROOT / "recipes" / "tiny.toml", "1b": ROOT / "recipes" / "1b.toml"}


def matmul_peak(dtype: torch.dtype, device: torch.device, n: int = 2048, reps: int = 10) -> float:
    """Measured FLOP/s of a square matmul in `dtype` (the machine's practical peak)."""
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    for _ in range(2):
        a @ b
    sync(device)
    start = time.perf_counter()
    for _ in range(reps):
        a @ b
    sync(device)
    return 2 * n**3 * reps / (time.perf_counter() - start)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def model_table(shape: str, seq_len: int) -> dict:
    recipe = load_recipe(SHAPES[shape], [f"data.seq_len={seq_len}"])
    table = dict(recipe.model)
    # The patcher runs once to make the patch lengths every row then shares; an entropy
    # checkpoint that is not there (e.g. the 1b recipe) leaves a random entropy model.
    patcher = dict(table.get("patcher", {}))
    ckpt = patcher.get("checkpoint") or ""
    if ckpt and not ckpt.startswith("bltx:") and not (ROOT / ckpt).exists():
        patcher.pop("checkpoint")
    table["patcher"] = patcher
    table["max_patches"] = None
    return table


def loss_of(logits: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
    return F.cross_entropy(logits[:, :-1].float().reshape(-1, logits.shape[-1]), ids[:, 1:].reshape(-1))


def time_steps(step, steps: int, warmup: int, device) -> float:
    for _ in range(warmup):
        step()
    sync(device)
    start = time.perf_counter()
    for _ in range(steps):
        step()
    sync(device)
    return (time.perf_counter() - start) / max(steps, 1)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shape", choices=sorted(SHAPES), default="tiny")
    parser.add_argument("--seq-len", type=int, default=512)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=3, help="interleaved timing rounds; best kept")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--rows", nargs="+", default=["eager_fp32", "compiled_fp32", "compiled_bf16", "hf_fp32"])
    parser.add_argument("--out", default="runs/bench_train.json")
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    import os

    os.chdir(ROOT)  # recipe paths (the bundled entropy checkpoint) are relative to the root

    torch.manual_seed(0)
    table = model_table(args.shape, args.seq_len)
    with torch.device(device):
        reference = bltx.build_model(table)
    reference.init_weights()
    text = (ROOT / "bltx" / "data" / "corpora").glob("*.txt")
    corpus = next(iter(sorted(text))).read_bytes()
    span = args.batch * args.seq_len
    ids = torch.tensor(list(corpus[:span]), device=device).view(args.batch, args.seq_len) + 4
    ids[:, 0] = 1  # BOS
    with torch.no_grad():
        starts = reference.patch(ids, include_next=True)
    lengths = starts_to_lengths(starts[:, : args.seq_len])
    # Compiled graphs pad the patch axis to the static model.max_patches; use what a recipe
    # would set (the batch's largest patch count rounded up to 64), not the default of one
    # slot per byte. Eager rows size the axis to the real count either way.
    most = int((lengths > 0).sum(-1).max())
    table["max_patches"] = -(-most // 64) * 64
    mean_len = args.seq_len / float((lengths > 0).sum(-1).float().mean())
    train_flops = flops_per_byte(reference, mean_len, args.seq_len, training=True)["total"]
    peaks = {"fp32": matmul_peak(torch.float32, device), "bf16": matmul_peak(torch.bfloat16, device)}

    def bltx_row(compiled: bool, dtype: torch.dtype):
        model = bltx.build_model(table).to(device)
        model.load_state_dict(reference.state_dict())
        model.train()
        fwd = torch.compile(model) if compiled else model
        opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)
        autocast = (torch.autocast(device.type, dtype=dtype) if dtype != torch.float32
                    else contextlib.nullcontext())

        def step():
            with autocast:
                loss = loss_of(fwd(ids, starts=starts), ids)
            loss.backward()
            opt.step()
            opt.zero_grad(set_to_none=True)

        return step

    def hf_row():
        from bltx.interop.hf import to_hf

        hf = to_hf(reference).to(device).train()
        opt = torch.optim.AdamW([p for p in hf.parameters() if p.requires_grad], lr=1e-4)
        # HF reads the "next byte opens a patch" bit as a trailing zero-length patch.
        hf_lengths = starts_to_lengths(starts)

        def step():
            loss = loss_of(hf(ids, patch_lengths=hf_lengths, use_cache=False).logits, ids)
            loss.backward()
            opt.step()
            opt.zero_grad(set_to_none=True)

        return step

    makers = {
        "eager_fp32": ("bltx eager fp32", lambda: bltx_row(False, torch.float32), "fp32"),
        "compiled_fp32": ("bltx compiled fp32", lambda: bltx_row(True, torch.float32), "fp32"),
        "compiled_bf16": ("bltx compiled bf16", lambda: bltx_row(True, torch.bfloat16), "bf16"),
        "eager_bf16": ("bltx eager bf16", lambda: bltx_row(False, torch.bfloat16), "bf16"),
        "hf_fp32": ("HF BltForCausalLM fp32", hf_row, "fp32"),
    }
    # Build (and compile, warm up) every row first, then time them in interleaved rounds and
    # keep each row's best round: a row timed first would otherwise pay for the process
    # warming up (allocator, caches, CPU clocks) and look slower than it is.
    steps = {}
    for key in args.rows:
        name, make, precision = makers[key]
        steps[key] = make()
        time_steps(steps[key], 0, args.warmup, device)
        print(f"  ready: {name}", file=sys.stderr)
    best = {key: float("inf") for key in args.rows}
    for _ in range(args.rounds):
        for key in args.rows:
            best[key] = min(best[key], time_steps(steps[key], args.steps, 1, device))
    rows = []
    for key in args.rows:
        name, _, precision = makers[key]
        seconds = best[key]
        bytes_per_s = span / seconds
        achieved = bytes_per_s * train_flops
        rows.append({"row": key, "name": name, "step_s": seconds, "bytes_per_s": bytes_per_s,
                     "flops_per_s": achieved, "peak_fraction": achieved / peaks[precision],
                     "precision": precision})

    base = rows[0]["bytes_per_s"]
    print(f"device={device} threads={torch.get_num_threads()} shape={args.shape} seq_len={args.seq_len} "
          f"batch={args.batch} mean patch length={mean_len:.2f} max_patches={table['max_patches']} "
          f"train FLOPs/byte={train_flops:.3g}")
    print(f"matmul peak: fp32 {peaks['fp32'] / 1e9:.1f} GFLOP/s, bf16 {peaks['bf16'] / 1e9:.1f} GFLOP/s")
    head = f"{'row':<24} | {'step s':>8} | {'bytes/s':>10} | {'vs first':>8} | {'GFLOP/s':>8} | {'of peak':>7}"
    print(head)
    print("-" * len(head))
    for r in rows:
        print(f"{r['name']:<24} | {r['step_s']:>8.3f} | {r['bytes_per_s']:>10.0f} | "
              f"{r['bytes_per_s'] / base:>7.2f}x | {r['flops_per_s'] / 1e9:>8.2f} | {r['peak_fraction']:>6.1%}")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"device": str(device), "shape": args.shape, "seq_len": args.seq_len,
                               "batch": args.batch, "mean_patch_length": mean_len,
                               "train_flops_per_byte": train_flops, "peaks": peaks, "rows": rows}, indent=2))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
