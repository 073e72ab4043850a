"""GPU check: the released BLT-1B shape on one GPU through the real entry point.

    bash tools/gpu_check.sh                      # one call, a few minutes on one H100/H200
    python tools/gpu_check.py --out runs/gpu_check.json --seq-len 4096 --batch 4 --steps 12

1. The GPU: name, torch version, measured bf16 matmul peak (8192^3).
2. Flex vs SDPA: the 1B model (same seeded weights) with `model.attention = "flex"` and
   `"sdpa"`, bf16 autocast forward on one window: max |logit difference|.
3. Training rows, each `python -m bltx.run recipes/1b.toml` (the real CLI, its trainer,
   data loader and build path) for a few steps: eager SDPA bf16; compiled flex bf16;
   compiled flex bf16 + float8 tensorwise (rowwise with --rowwise); the compiled row with full
   activation checkpointing (the one-GPU layouts: FSDP/TP need more than one GPU, and
   NCCL refuses two ranks on one device). Each row prints bytes/s (median after warm-up),
   MFU (model training FLOPs per byte x bytes/s over the measured bf16 peak) and the
   peak memory the trainer logged.

Patching is static (stride 4): the released entropy model's weights are not bundled, and
a randomly initialised entropy model would put a boundary at almost every byte. Data is
the bundled corpus; nothing is downloaded. Prints a table and writes JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402


def bf16_peak(device: torch.device, n: int = 8192, reps: int = 10) -> float:
    a = torch.randn(n, n, device=device, dtype=torch.bfloat16)
    b = torch.randn(n, n, device=device, dtype=torch.bfloat16)
    for _ in range(3):
        a @ b
    torch.cuda.synchronize()
    t = time.perf_counter()
    for _ in range(reps):
        a @ b
    torch.cuda.synchronize()
    return 2 * n**3 * reps / (time.perf_counter() - t)


def base_overrides(seq_len: int, batch: int, steps: int, dump: Path) -> list[str]:
    return [
        f"data.seq_len={seq_len}", f"data.batch_size={batch}", f"training.steps={steps}",
        'model.patcher={type = "static", stride = 4}', f"model.max_patches={seq_len // 4}",
        "metrics.log_interval=1", "metrics.tensorboard=false", "metrics.progress_bar=false",
        "eval.interval=0", "checkpoint.enable=false", f'job.dump_dir="{dump}"', "data.validation_fraction=0.05",
        'training.dtype="bfloat16"', "lr_scheduler.warmup_steps=2",
    ]


def flex_vs_sdpa(seq_len: int) -> dict:
    from bltx.config import load_recipe
    from bltx.parallel import World, build_training_model

    sets = base_overrides(seq_len, 1, 1, Path(tempfile.gettempdir()))
    sets += ["compile.enable=false", "float8.enable=false", 'activation_checkpoint.mode="none"']
    world = World.from_env("cuda")
    ids = torch.randint(4, 260, (1, seq_len), device=world.device, generator=torch.Generator(world.device).manual_seed(0))
    logits = {}
    for backend in ("sdpa", "flex"):
        model = build_training_model(load_recipe(ROOT / "recipes/1b.toml", [*sets, f'model.attention="{backend}"']), world)
        model.eval()
        with torch.no_grad(), torch.autocast("cuda", dtype=torch.bfloat16):
            logits[backend] = model(ids).logits.float()
        del model
        torch.cuda.empty_cache()
    diff = (logits["flex"] - logits["sdpa"]).abs()
    agree = (logits["flex"].argmax(-1) == logits["sdpa"].argmax(-1)).float().mean()
    return {"max_abs_diff": float(diff.max()), "mean_abs_diff": float(diff.mean()),
            "logit_scale": float(logits["sdpa"].abs().mean()), "argmax_agreement": float(agree)}


def train_row(name: str, extra: list[str], args, flops_per_byte: float, peak: float, timeout: int) -> dict:
    dump = Path(tempfile.mkdtemp(prefix=f"gpu_check_{name}_"))
    cmd = [sys.executable, "-m", "bltx.run", str(ROOT / "recipes/1b.toml")]
    for s in base_overrides(args.seq_len, args.batch, args.steps, dump) + extra:
        cmd += ["--set", s]
    t0 = time.perf_counter()
    try:
        proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=timeout,
                              env={**os.environ, "PYTHONPATH": os.pathsep.join(
                                  [str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])])})
        rc, tail = proc.returncode, (proc.stdout + proc.stderr).strip().splitlines()[-6:]
    except subprocess.TimeoutExpired:
        rc, tail = 124, [f"timed out after {timeout}s"]
    wall = time.perf_counter() - t0
    metrics = dump / "metrics.jsonl"
    rows = [json.loads(x) for x in metrics.read_text().splitlines()] if metrics.is_file() else []
    train = [r for r in rows if r.get("split") == "train"]
    row = {"row": name, "rc": rc, "wall_s": round(wall, 1), "steps_logged": len(train)}
    warm = train[args.warmup:] or train[-1:]
    if warm:
        bps = statistics.median(r["bytes_per_s"] for r in warm)
        row.update(bytes_per_s=bps, mfu=bps * flops_per_byte / peak,
                   peak_mem_gib=max(r.get("peak_mem_gib", 0.0) for r in train),
                   last_loss=train[-1]["loss"], first_loss=train[0]["loss"])
    if rc != 0:
        row["error"] = tail
    print(json.dumps(row), flush=True)
    return row


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seq-len", type=int, default=4096)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=4, help="logged steps left out of the median")
    parser.add_argument("--row-timeout", type=int, default=120, help="seconds per training row")
    parser.add_argument("--rowwise", action="store_true", help="add a float8 rowwise row")
    parser.add_argument("--rows", nargs="+", default=None, help="training rows to run (default: all)")
    parser.add_argument("--out", default="runs/gpu_check.json")
    args = parser.parse_args()
    if not torch.cuda.is_available():
        print("error: no CUDA device; tools/gpu_check.py runs on a GPU machine", file=sys.stderr)
        return 2
    device = torch.device("cuda")
    info = {"gpu": torch.cuda.get_device_name(device), "torch": torch.__version__,
            "seq_len": args.seq_len, "batch": args.batch, "steps": args.steps}
    peak = bf16_peak(device)
    info["bf16_peak_tflops"] = peak / 1e12
    print(json.dumps(info), flush=True)

    import bltx
    from bltx.config import load_recipe
    from bltx.eval.flops import flops_per_byte

    recipe = load_recipe(ROOT / "recipes/1b.toml", base_overrides(args.seq_len, 1, 1, Path("/tmp")))
    with torch.device("meta"):  # the counter reads sizes only
        model = bltx.build_model(recipe)
    train_fpb = flops_per_byte(model, 4.0, args.seq_len, training=True)["total"]
    info["train_flops_per_byte"] = train_fpb

    try:
        info["flex_vs_sdpa"] = flex_vs_sdpa(min(args.seq_len, 2048))
    except Exception as exc:  # report and go on: the training rows still tell a lot
        info["flex_vs_sdpa"] = {"error": f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"}
    print(json.dumps({"flex_vs_sdpa": info["flex_vs_sdpa"]}), flush=True)

    off = ["float8.enable=false", 'activation_checkpoint.mode="none"']
    rows_spec = [
        ("eager_sdpa_bf16", ["compile.enable=false", 'model.attention="sdpa"', *off]),
        ("compiled_flex_bf16", ["compile.enable=true", 'model.attention="flex"', *off]),
        ("compiled_flex_float8_tensorwise", ["compile.enable=true", 'model.attention="flex"', "float8.enable=true",
                                             'float8.recipe="tensorwise"', 'activation_checkpoint.mode="none"']),
        ("compiled_flex_bf16_ac_full", ["compile.enable=true", 'model.attention="flex"', "float8.enable=false",
                                        'activation_checkpoint.mode="full"']),
    ]
    if args.rowwise:
        rows_spec.append(("compiled_flex_float8_rowwise", ["compile.enable=true", 'model.attention="flex"',
                                                           "float8.enable=true", 'float8.recipe="rowwise"',
                                                           'activation_checkpoint.mode="none"']))
    if args.rows:
        rows_spec = [(name, extra) for name, extra in rows_spec if name in args.rows]
    rows = [train_row(name, extra, args, train_fpb, peak, args.row_timeout // (2 if name.startswith("eager") else 1))
            for name, extra in rows_spec]

    print()
    print(f"{info['gpu']}, torch {info['torch']}, bf16 peak {peak / 1e12:.0f} TFLOP/s (measured), "
          f"1B shape, seq {args.seq_len} x batch {args.batch}, static patches of 4")
    print(f"{'row':34} {'bytes/s':>10} {'MFU':>7} {'peak GiB':>9} {'loss first->last':>18} {'wall s':>7}")
    for r in rows:
        if "bytes_per_s" in r:
            print(f"{r['row']:34} {r['bytes_per_s']:>10.0f} {r['mfu']:>7.1%} {r['peak_mem_gib']:>9.1f} "
                  f"{r['first_loss']:>8.3f}->{r['last_loss']:<8.3f} {r['wall_s']:>7.0f}")
        else:
            print(f"{r['row']:34} failed rc={r['rc']}: {' | '.join(r.get('error', []))[:300]}")
    fs = info["flex_vs_sdpa"]
    print(f"flex vs sdpa logits: {fs}")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({**info, "rows": rows}, indent=2))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
