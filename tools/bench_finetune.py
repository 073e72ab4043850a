"""The fine-tuning example, measured: the demo model fine-tuned three ways on the same
instruction set at the same budget, scored on held-out examples.

    python tools/bench_finetune.py [--steps 150] [--out runs/bench_finetune.json]

Runs, through the real CLI (`python -m bltx.run`):
  1. the demo (`recipes/tiny.toml` -> runs/tiny) if runs/tiny has no checkpoint yet, and
     `tools/make_instruct.py` (-> runs/instruct) if its files are missing;
  2. `recipes/finetune/{full,frozen_latent,lora}.toml`, each from a fresh dump folder;
  3. the eval task on `runs/instruct/heldout.jsonl` (completion bytes and EOS) for the
     demo model and each fine-tuned one, and the completion bpb of each kind of held-out
     example through `bltx.load(...).score`.

Per variant: trainable parameters, training throughput (window bytes per second, padding
included, median of the logged windows after the first), the process's peak resident
memory, wall time, and the held-out completion bpb (all, and by kind). Prints a table and
writes the JSON. Quote the machine printed with it.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

VARIANTS = ("full", "frozen_latent", "lora")
INSTRUCT = Path("runs/instruct")
HELDOUT = INSTRUCT / "heldout.jsonl"
START = Path("runs/tiny")
KINDS = {"who speaks next": "Who speaks next?", "complete the line": "Complete the line:"}


def machine() -> str:
    flags = ""
    try:
        text = Path("/proc/cpuinfo").read_text()
        model = next(ln.split(":", 1)[1].strip() for ln in text.splitlines() if ln.startswith("model name"))
        have = set(next(ln for ln in text.splitlines() if ln.startswith("flags")).split())
        flags = ",".join(f for f in ("avx2", "avx512f", "avx512_bf16", "amx_bf16") if f in have)
    except (OSError, StopIteration):
        model = platform.processor()
    import torch

    return f"{model} [{flags}], {torch.get_num_threads()} threads, torch {torch.__version__}"


def run(args: list[str]) -> tuple[float, float]:
    """Run `python -m bltx.run ARGS` from the repository root; (wall s, peak RSS MiB)."""
    start = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-m", "bltx.run", *args], cwd=ROOT,
                            env={**os.environ, "PYTHONPATH": str(ROOT)})
    _, status, usage = os.wait4(proc.pid, 0)  # this child's own rusage (ru_maxrss in KiB)
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise SystemExit(f"error: python -m bltx.run {' '.join(args)} exited {proc.returncode}")
    return time.perf_counter() - start, usage.ru_maxrss / 1024


def heldout_bpb(recipe: str, checkpoint: Path, dump: Path) -> float:
    run([recipe, "--set", "job.task=eval", "--set", f"eval.checkpoint={checkpoint}",
         "--set", f"eval.path={HELDOUT}", "--set", "eval.steps=0", "--set", f"job.dump_dir={dump}",
         "--set", "metrics.progress_bar=false"])
    return json.loads((ROOT / dump / "eval.json").read_text())["bpb"]


def bpb_by_kind(checkpoint: Path, per_kind: int) -> dict[str, float]:
    """Completion bits per byte on held-out examples of each kind, from the loaded model
    (`bltx.load`): NLL(prompt + completion) - NLL(prompt), over the completion's bytes (no
    EOS, unlike the eval task), a second measurement through another path."""
    import bltx

    model = bltx.load(ROOT / checkpoint, merge_adapters=True)
    examples = [json.loads(line) for line in (ROOT / HELDOUT).read_text().splitlines()]
    out = {}
    for kind, opening in KINDS.items():
        chosen = [e for e in examples if e["prompt"].startswith(opening)][:per_kind]
        nats = sum(model.score(e["prompt"] + e["completion"])["nll"] - model.score(e["prompt"])["nll"] for e in chosen)
        n_bytes = sum(len(e["completion"].encode()) for e in chosen)
        out[kind] = nats / math.log(2) / n_bytes
    return out


def train_metrics(dump: Path) -> dict:
    rows = [json.loads(line) for line in (ROOT / dump / "metrics.jsonl").read_text().splitlines()]
    train = [r for r in rows if r.get("split") == "train"]
    rates = [r["bytes_per_s"] for r in train[1:]] or [r["bytes_per_s"] for r in train]
    return {"bytes_per_s": statistics.median(rates), "final_train_bpb": train[-1]["bpb"]}


def trainable(recipe: str) -> tuple[int, int]:
    import bltx
    from bltx.dry_run import parameter_rows

    rows = dict((name, (total, tr)) for name, total, tr in parameter_rows(bltx.load_recipe(ROOT / recipe)))
    return rows["total"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=150)
    parser.add_argument("--kind-examples", type=int, default=200, help="held-out examples per kind for bpb by kind")
    parser.add_argument("--out", default="runs/bench_finetune.json")
    args = parser.parse_args(argv)
    os.chdir(ROOT)
    if not (ROOT / HELDOUT).is_file():
        subprocess.run([sys.executable, "tools/make_instruct.py", str(INSTRUCT)], cwd=ROOT, check=True)
    if not any((ROOT / START / "checkpoints").glob("step_*")):
        print("training the starting point (recipes/tiny.toml -> runs/tiny)", flush=True)
        run(["recipes/tiny.toml", "--set", "metrics.progress_bar=false"])
    result = {"machine": machine(), "steps": args.steps, "start": str(START), "variants": {}}
    base = "recipes/finetune/full.toml"
    result["start_heldout_bpb"] = heldout_bpb(base, START, Path("runs/bench_finetune/start"))
    result["start_bpb_by_kind"] = bpb_by_kind(START, args.kind_examples)
    for name in VARIANTS:
        recipe = f"recipes/finetune/{name}.toml"
        dump = Path(f"runs/bench_finetune/{name}")
        shutil.rmtree(ROOT / dump, ignore_errors=True)  # a fresh run, not a resume
        wall, rss = run([recipe, "--set", f"job.dump_dir={dump}", "--set", f"training.steps={args.steps}",
                         "--set", f"checkpoint.interval={args.steps}", "--set", "metrics.progress_bar=false"])
        total, train_params = trainable(recipe)
        result["variants"][name] = {
            "recipe": recipe, "params": total, "trainable_params": train_params,
            "wall_s": wall, "peak_rss_mib": rss, **train_metrics(dump),
            "heldout_bpb": heldout_bpb(recipe, dump, dump / "heldout"),
            "heldout_bpb_by_kind": bpb_by_kind(dump, args.kind_examples),
        }
    out = ROOT / args.out
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1) + "\n")
    kinds = list(KINDS)
    print(f"\nmachine: {result['machine']}; {args.steps} steps of {base}'s data each")
    head = f"{'variant':<15}{'trainable':>11}{'bytes/s':>9}{'peak RSS':>10}{'wall':>7}{'held-out bpb':>14}"
    print(head + "".join(f"{k:>20}" for k in kinds))
    by_kind = result["start_bpb_by_kind"]
    print(f"{'start (demo)':<15}{'-':>11}{'-':>9}{'-':>10}{'-':>7}{result['start_heldout_bpb']:>14.3f}"
          + "".join(f"{by_kind[k]:>20.3f}" for k in kinds))
    for name, v in result["variants"].items():
        print(f"{name:<15}{v['trainable_params']:>11,}{v['bytes_per_s']:>9.0f}{v['peak_rss_mib']:>8.0f}Mi"
              f"{v['wall_s']:>6.0f}s{v['heldout_bpb']:>14.3f}" + "".join(f"{v['heldout_bpb_by_kind'][k]:>20.3f}" for k in kinds))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
