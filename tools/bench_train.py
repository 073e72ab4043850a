"""Training throughput: bltx eager and compiled (fp32, and bf16 where the device runs it
natively) and Hugging Face `BltForCausalLM` with the same weights (via bltx.interop.hf) and
the same patch lengths.

One training step = forward + backward + AdamW step on one batch. Each row reports bytes/s
and the achieved FLOP/s (the model's training FLOPs per byte from bltx.eval.flops (the one counter) times
bytes/s) as a fraction of this machine's measured matmul peak in the row's dtype. All rows
run in one process on the same machine, so the ratios are what to read. On CPU each row is
also profiled once (tools/op_profile.py): its time in GEMM, attention and optimizer kernels,
which a compiler calls as they are, against the rest, which it can fuse; that bounds what
compiling can win (printed as the compile ceiling next to the measured compiled/eager).
Prints a table and writes JSON.

    python tools/bench_train.py                 # tiny-recipe shapes, seq 512, batch 4
    python tools/bench_train.py --shape small   # latent 8 x 512, local 256, seq 1024 x 2, 35.3M params
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
from bltx.bytes import IGNORE_ID  # noqa: E402
from bltx.config import load_recipe  # noqa: E402
from bltx.eval.flops import flops_per_byte  # noqa: E402
from bltx.patching.base import starts_to_lengths  # noqa: E402
from bltx.parallel.compile import compile_whole  # noqa: E402
from bltx.parallel.plans import plan_for  # noqa: E402
from bltx.precision import resolve_dtype  # noqa: E402
from bltx.train.optim import build_optimizer  # noqa: E402
from tools.op_profile import compile_ceiling, kernel_split  # noqa: E402
from tools.step_breakdown import step_breakdown  # noqa: E402
from tools.table import print_table  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
# name -> (recipe, --set overrides, default seq_len, default batch)
SHAPES = {
    "tiny": (ROOT / "recipes" / "tiny.toml", [], 512, 4),
    "1b": (ROOT / "recipes" / "1b.toml", [], 512, 4),
    # A real width that still trains on a 2-core CPU: the tiny recipe's entropy patcher and
    # embedder tables, local models 256 wide (BLT-1B's 1 encoder layer, fewer decoder
    # layers), latent 8 x 512.
    "small": (ROOT / "recipes" / "tiny.toml", [
        'model.encoder={type="local", dim=256, n_layers=1, n_heads=4, window=128}',
        'model.latent={type="transformer", dim=512, n_layers=8, n_heads=8}',
        'model.decoder={type="local", dim=256, n_layers=4, n_heads=4, window=128}',
    ], 1024, 2),
}
CPU_FLAGS = ("avx2", "fma", "avx512f", "avx512_bf16", "amx_tile", "amx_bf16")


def cpu_flags() -> list[str]:
    """The x86 flags that decide matmul speed per dtype, as /proc/cpuinfo lists them."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return []
    line = next((ln for ln in text.splitlines() if ln.startswith("flags")), "")
    have = set(line.split(":", 1)[-1].split())
    return [f for f in CPU_FLAGS if f in have]


def default_rows(device) -> list[str]:
    """Eager and compiled in each precision the device runs natively, HF in its best one.
    (Emulated bf16 rows run on request only: `--rows compiled_bf16` took over 20 minutes for
    the tiny shape on a 2-core CPU without avx512_bf16/AMX.)"""
    native = resolve_dtype("auto", device)[0] == "bfloat16"
    precisions = ["fp32", "bf16"] if native else ["fp32"]
    rows = [f"{mode}_{p}" for p in precisions for mode in ("eager", "compiled")]
    return rows + ["hf_bf16" if native else "hf_fp32"]


def matmul_peak(dtype: torch.dtype, device: torch.device, n: int = 2048, reps: int = 5) -> float:
    """Measured FLOP/s of a square matmul in `dtype` (the machine's practical peak)."""
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    for _ in range(3):
        a @ b
    best = float("inf")
    for _ in range(3):  # best of three rounds: one disturbed round must not lower the peak
        sync(device)
        start = time.perf_counter()
        for _ in range(reps):
            a @ b
        sync(device)
        best = min(best, time.perf_counter() - start)
    return 2 * n**3 * reps / best


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def model_table(shape: str, seq_len: int) -> dict:
    path, overrides, _, _ = SHAPES[shape]
    recipe = load_recipe(path, [f"data.seq_len={seq_len}", *overrides])
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


def shifted_targets(ids: torch.Tensor) -> torch.Tensor:
    """The targets `loss_of` scores (byte t+1 at t; the last position not trained), for a
    bltx model that computes its loss inside its forward as the trainer calls it."""
    return torch.cat([ids[:, 1:], torch.full_like(ids[:, :1], IGNORE_ID)], dim=1)


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
    parser.add_argument("--seq-len", type=int, default=None, help="default: the shape's")
    parser.add_argument("--batch", type=int, default=None, help="default: the shape's")
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=3, help="interleaved timing rounds; best kept")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--rows", nargs="+", default=None, help="default: see default_rows")
    parser.add_argument("--no-breakdown", action="store_true", help="skip the per-component times")
    parser.add_argument("--out", default="runs/bench_train.json")
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    _, _, seq_len, batch = SHAPES[args.shape]
    args.seq_len = args.seq_len or seq_len
    args.batch = args.batch or batch
    args.rows = args.rows or default_rows(device)
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
    # Two batches (consecutive spans of the corpus) with different patch counts, used in
    # turn: a compiled step must serve both from one graph (the patch axis is a dynamic
    # size), and any recompile shows up in the count below.
    batches = []
    for i in range(2):
        ids = torch.tensor(list(corpus[i * span:(i + 1) * span]), device=device).view(args.batch, args.seq_len) + 4
        ids[:, 0] = 1  # BOS
        with torch.no_grad():
            batches.append((ids, reference.patch(ids, include_next=True)))
    counts = [(starts_to_lengths(s[:, : args.seq_len]) > 0).sum(-1) for _, s in batches]
    patches = torch.cat(counts).float()
    mean_len = args.seq_len / float(patches.mean())
    # Latent rows computed beyond the real patches: each batch's axis is its longest row.
    padding = 1 - float(patches.sum()) / sum(args.batch * int(c.max()) for c in counts)
    train_flops = flops_per_byte(reference, mean_len, args.seq_len, training=True)["total"]
    # Peaks only for the precisions the rows use: on a CPU without native bf16 a bf16 GEMM
    # can run 30x slower than fp32, and measuring that peak alone would take minutes.
    needed = sorted({key.rsplit("_", 1)[1] for key in args.rows})
    peaks = {p: matmul_peak({"fp32": torch.float32, "bf16": torch.bfloat16}[p], device) for p in needed}

    def autocast_for(dtype: torch.dtype):
        return torch.autocast(device.type, dtype=dtype) if dtype != torch.float32 else contextlib.nullcontext()

    optimizer_cfg = load_recipe(SHAPES[args.shape][0]).optimizer  # the recipe's, fused where supported

    def bltx_copy():
        model = bltx.build_model(table).to(device)
        model.load_state_dict(reference.state_dict())
        model.train()
        return model, build_optimizer(model, optimizer_cfg, device)

    def bltx_row(compiled: bool, dtype: torch.dtype):
        model, opt = bltx_copy()
        if compiled:  # what the trainer does for compile.scope = "model"
            compile_whole(model, plan_for(model).compiled_root)
        autocast = autocast_for(dtype)
        turn = [0]

        def step():
            ids, starts = batches[turn[0] % 2]
            turn[0] += 1
            with autocast:  # the trainer's call: the loss inside the (compiled) forward
                loss = model(ids, shifted_targets(ids), starts=starts).nll / (ids.numel() - ids.shape[0])
            loss.backward()
            opt.step()
            opt.zero_grad(set_to_none=True)

        return step

    def hf_row(dtype: torch.dtype = torch.float32):
        from bltx.interop.hf import to_hf

        hf = to_hf(reference).to(device).train()
        opt = build_optimizer(hf, optimizer_cfg, device)
        # HF reads the "next byte opens a patch" bit as a trailing zero-length patch.
        hf_batches = [(ids, starts_to_lengths(starts)) for ids, starts in batches]
        autocast = autocast_for(dtype)
        turn = [0]

        def step():
            ids, hf_lengths = hf_batches[turn[0] % 2]
            turn[0] += 1
            with autocast:
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
        "hf_bf16": ("HF BltForCausalLM bf16", lambda: hf_row(torch.bfloat16), "bf16"),
    }
    # Build (and compile, warm up) every row first, then time them in interleaved rounds and
    # keep each row's best round: a row timed first would otherwise pay for the process
    # warming up (allocator, caches, CPU clocks) and look slower than it is.
    steps = {}
    for key in list(args.rows):
        name, make, precision = makers[key]
        try:
            steps[key] = make()
        except ImportError as exc:  # e.g. no transformers on this machine: the other rows stand
            print(f"  skipped: {name} ({exc})", file=sys.stderr)
            args.rows.remove(key)
            continue
        time_steps(steps[key], 0, args.warmup, device)
        print(f"  ready: {name}", file=sys.stderr)
    best = {key: float("inf") for key in args.rows}
    # Graphs compiled after warm-up (new shapes or guards failing on data) are recompiles.
    graphs_before = torch._dynamo.utils.counters["stats"]["unique_graphs"]
    for _ in range(args.rounds):
        for key in args.rows:
            best[key] = min(best[key], time_steps(steps[key], args.steps, 1, device))
    recompiles = torch._dynamo.utils.counters["stats"]["unique_graphs"] - graphs_before
    # The peak again, right after the rows, in the same machine state; the higher one counts.
    peaks = {p: max(v, matmul_peak({"fp32": torch.float32, "bf16": torch.bfloat16}[p], device))
             for p, v in peaks.items()}
    auto_dtype, auto_reason = resolve_dtype("auto", device)
    # GEMM / attention / optimizer kernel time per step of each row (CPU): what compile
    # does not fuse, hence the ceiling on compiled/eager.
    kernels = {}
    if device.type == "cpu" and not args.no_breakdown:
        kernels = {key: kernel_split(steps[key]) for key in args.rows}
    breakdown = {}
    if not args.no_breakdown:
        model, opt = bltx_copy()
        bd_dtype = torch.bfloat16 if auto_dtype == "bfloat16" else torch.float32
        breakdown = step_breakdown(model, *batches[0], loss_of, opt, autocast_for(bd_dtype))
    rows = []
    for key in args.rows:
        name, _, precision = makers[key]
        seconds = best[key]
        bytes_per_s = span / seconds
        achieved = bytes_per_s * train_flops
        rows.append({"row": key, "name": name, "step_s": seconds, "bytes_per_s": bytes_per_s,
                     "flops_per_s": achieved, "peak_fraction": achieved / peaks[precision],
                     "precision": precision})
        if key in kernels:
            rows[-1]["kernel_s"] = kernels[key]

    base = rows[0]["bytes_per_s"]
    print(f"device={device} threads={torch.get_num_threads()} shape={args.shape} seq_len={args.seq_len} "
          f"batch={args.batch} mean patch length={mean_len:.2f} latent padding={padding:.1%} "
          f"train FLOPs/byte={train_flops:.3g}")
    flags = cpu_flags() if device.type == "cpu" else []
    print(f"cpu flags seen: {' '.join(flags) or '-'}; training.dtype auto -> {auto_dtype} ({auto_reason})")
    print("matmul peak: " + ", ".join(f"{p} {v / 1e9:.1f} GFLOP/s" for p, v in peaks.items()))
    print(f"recompiles after warm-up: {recompiles}")
    print_table(["row", "step s", "bytes/s", "vs first", "GFLOP/s", "of peak"],
                [[r["name"], f"{r['step_s']:.3f}", f"{r['bytes_per_s']:.0f}", f"{r['bytes_per_s'] / base:.2f}x",
                  f"{r['flops_per_s'] / 1e9:.2f}", f"{r['peak_fraction']:.1%}"] for r in rows])
    if kernels:
        print("kernel split of a profiled step ('other': the rest of its wall time, profiler overhead included):")
        for r in rows:
            split = r["kernel_s"]
            wall = sum(split.values())
            print(f"  {r['name']:<24} " + "  ".join(
                f"{kind} {sec:.3f} s ({sec / wall:.0%})" for kind, sec in split.items()))
        for p in ("fp32", "bf16"):
            eager = next((r for r in rows if r["row"] == f"eager_{p}"), None)
            compiled = next((r for r in rows if r["row"] == f"compiled_{p}"), None)
            if eager and compiled:
                ceiling = compile_ceiling(eager["step_s"], kernels[eager["row"]])
                print(f"  {p}: compiled/eager {eager['step_s'] / compiled['step_s']:.2f}x; ceiling for a compiler "
                      f"that fuses only 'other' {ceiling:.2f}x")
    if breakdown:
        total = sum(breakdown.values())
        print(f"eager step breakdown ({auto_dtype}; parts timed alone; sum {total:.3f} s, entropy model "
              f"not in the rows above, which share precomputed patches):")
        for part, sec in breakdown.items():
            print(f"  {part:<14} {sec * 1e3:9.1f} ms  {sec / total:6.1%}")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"device": str(device), "shape": args.shape, "seq_len": args.seq_len,
                               "batch": args.batch, "mean_patch_length": mean_len, "latent_padding": padding,
                               "train_flops_per_byte": train_flops, "peaks": peaks, "rows": rows,
                               "cpu_flags": flags, "auto_dtype": [auto_dtype, auto_reason],
                               "recompiles": recompiles, "breakdown_s": breakdown}, indent=2))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
