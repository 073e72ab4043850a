"""Run a set of recipes at equal training FLOPs and tabulate bits per byte against compute.

    python tools/compare.py recipes/compare/shakespeare.toml
    python tools/compare.py recipes/compare/shakespeare.toml --flops 2e12 --out runs/compare \
        --set data.paths='["/work/shared/data/tinyshakespeare.txt"]'
    python tools/compare.py --recipes recipes/tiny.toml recipes/baselines/byte_transformer.toml --flops 1e12

A comparison file is TOML with one [compare] table:

    [compare]
    recipes = ["blt_entropy.toml", "blt_static.toml", ...]   # relative to this file
    flops = 2e12           # training FLOPs per recipe (forward + backward, BLT paper accounting)
    set = ["training.dtype=\\"float32\\""]   # overrides applied to every recipe
    eval_batches = 16      # validation batches for the final bpb
    evals = 4              # validation points along training (the curves of the plot)
    out = "runs/compare"

For each recipe: build the model, measure its mean patch length on a few training batches,
compute training FLOPs per byte (`bltx.eval.flops`: each component counts its own), set
`training.steps` so steps * bytes per step * FLOPs per byte = the budget, train with the
ordinary trainer (dump folder OUT/NAME, a final checkpoint kept for tools/show_patches.py),
then measure validation bpb and the mean patch length on the validation split.
Writes OUT/compare.md, OUT/compare.json and OUT/compare.png (validation bpb against
training FLOPs, one curve per recipe).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

from bltx.config import load_recipe  # noqa: E402
from bltx.errors import BltxError, ConfigError  # noqa: E402
from bltx.protocols import has  # noqa: E402


def read_compare_file(path: Path) -> dict:
    try:
        table = tomllib.loads(path.read_text())
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"cannot read comparison file {path}: {exc}") from None
    cfg = table.get("compare")
    if not isinstance(cfg, dict) or not cfg.get("recipes"):
        raise ConfigError(f"{path}: expected a [compare] table with a non-empty `recipes` list")
    unknown = set(cfg) - {"recipes", "flops", "set", "eval_batches", "evals", "out"}
    if unknown:
        raise ConfigError(f"{path}: unknown [compare] keys {sorted(unknown)}")
    cfg["recipes"] = [str((path.parent / r).resolve()) if not Path(r).is_absolute() else r for r in cfg["recipes"]]
    return cfg


def run_one(recipe_path: str, flops_budget: float, overrides: list[str], out: Path,
            eval_batches: int, evals: int) -> dict:
    from bltx.data.loader import build_data_for_recipe, validation_batches
    from bltx.eval.flops import measure_mean_patch_length, total_flops_per_byte
    from bltx.train.loss import evaluate_bpb
    import bltx

    name = Path(recipe_path).stem
    probe = load_recipe(recipe_path, overrides)
    for module in probe.job.plugins:
        __import__(module)
    data = build_data_for_recipe(probe)
    torch.manual_seed(probe.job.seed)
    model = bltx.build_model(probe)
    train_probe = data.train_batches(probe.data.batch_size, probe.job.seed)
    L_train = measure_mean_patch_length(model, [next(train_probe) for _ in range(4)])
    # Learned chunking: an untrained router's chunk count says nothing about training; the
    # ratio loss holds chunks near the target, so the budget is planned at the target and
    # the realised length is accounted after the run (below).
    target = model.target_chunk_length if has(model, "learned_chunks") else None
    if target is not None:
        L_train = float(target)
    seq_len = probe.data.seq_len
    train_fpb = total_flops_per_byte(model, L_train, seq_len, training=True)
    bytes_per_step = probe.data.batch_size * seq_len * probe.training.grad_accum
    steps = max(1, int(flops_budget / (train_fpb * bytes_per_step)))
    n_params = sum(p.numel() for p in model.parameters() if p.requires_grad)
    del model

    dump = out / name
    interval = max(1, steps // max(1, evals))
    run_overrides = list(overrides) + [
        f"training.steps={steps}",
        f'job.dump_dir="{dump}"',
        "checkpoint.enable=true",
        f"checkpoint.interval={steps}",
        "checkpoint.keep_latest=1",
        "checkpoint.auto_resume=false",
        f"eval.interval={interval}",
        f"eval.steps={eval_batches}",
        f"metrics.log_interval={max(1, steps // 10)}",
        "metrics.progress_bar=false",
        "lr_scheduler.warmup_steps=" + str(max(1, min(probe.lr_scheduler.warmup_steps, steps // 10))),
    ]
    if dump.exists():
        import shutil

        shutil.rmtree(dump)  # a fresh run: compare never resumes a stale one
    recipe = load_recipe(recipe_path, run_overrides)
    from bltx.train.trainer import Trainer

    print(f"== {name}: {steps} steps, {train_fpb:.3g} training FLOPs/byte, "
          f"L = {L_train:.2f} bytes/patch, {n_params / 1e6:.2f}M params", flush=True)
    t0 = time.perf_counter()
    trainer = Trainer(recipe)
    trainer.fit()
    wall = time.perf_counter() - t0

    val = validation_batches(data.validation, probe.data.batch_size, eval_batches)
    result = evaluate_bpb(trainer.model, val, trainer.device, recipe.training.dtype)
    L_val = result.mean_patch_length if result.patches else 1.0
    infer_fpb = total_flops_per_byte(trainer.model, L_val, seq_len, training=False)
    rows = [json.loads(line) for line in (dump / "metrics.jsonl").read_text().splitlines()]
    if target is not None:
        # Training FLOPs at the chunk length the run actually had (mean over its log windows).
        seen = [r["mean_patch_length"] for r in rows if r.get("split") == "train" and r.get("mean_patch_length")]
        if seen:
            L_train = sum(seen) / len(seen)
            train_fpb = total_flops_per_byte(trainer.model, L_train, seq_len, training=True)
    curve = []
    for row in rows:
        if row.get("split") == "val" and "val_bpb" in row:
            curve.append([row["step"] * bytes_per_step * train_fpb, row["val_bpb"]])
    return {
        "name": name,
        "recipe": str(Path(recipe_path).resolve().relative_to(ROOT)) if Path(recipe_path).resolve().is_relative_to(ROOT) else recipe_path,
        "model": recipe.model.get("type"),
        "params": n_params,
        "steps": steps,
        "train_bytes": steps * bytes_per_step,
        "train_flops": steps * bytes_per_step * train_fpb,
        "train_flops_per_byte": train_fpb,
        "train_mean_patch_length": L_train,
        "inference_flops_per_byte": infer_fpb,
        "mean_patch_length": L_val,
        "val_bpb": result.bpb,
        "val_bytes": result.bytes,
        "wall_s": wall,
        "curve": curve,
    }


def write_outputs(rows: list[dict], out: Path, meta: dict) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / "compare.json").write_text(json.dumps({"meta": meta, "runs": rows}, indent=1) + "\n")
    head = ("| run | model | params | steps | train FLOPs/byte | inference FLOPs/byte | "
            "mean patch length | val bpb | wall time |")
    lines = [head, "|" + "---|" * 9]
    for r in rows:
        lines.append(
            f"| {r['name']} | {r['model']} | {r['params'] / 1e6:.2f}M | {r['steps']} | "
            f"{r['train_flops_per_byte']:.3g} | {r['inference_flops_per_byte']:.3g} | "
            f"{r['mean_patch_length']:.2f} | **{r['val_bpb']:.3f}** | {r['wall_s']:.0f} s |"
        )
    note = (f"\nEqual training budget: {meta['flops']:.3g} FLOPs per run "
            f"(BLT paper accounting: 3x forward for trained parts, 1x the frozen entropy model). "
            f"Validation bpb on {rows[0]['val_bytes'] if rows else 0} held-out bytes.\n")
    (out / "compare.md").write_text("\n".join(lines) + "\n" + note)
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib not installed: no plot (pip install matplotlib)", file=sys.stderr)
        return
    fig, ax = plt.subplots(figsize=(6.4, 4.2), dpi=120)
    for r in rows:
        points = [c for c in r["curve"] if c[0] > 0]  # the untrained point has no place on a log axis
        xs = [c[0] for c in points] or [r["train_flops"]]
        ys = [c[1] for c in points] or [r["val_bpb"]]
        ax.plot(xs, ys, marker="o", label=f"{r['name']} (L={r['mean_patch_length']:.1f})")
    ax.set_xscale("log")
    ax.set_xlabel("training FLOPs")
    ax.set_ylabel("validation bits per byte")
    ax.set_title("bpb at equal training FLOPs")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out / "compare.png")
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("compare_file", nargs="?", help="a TOML file with a [compare] table")
    ap.add_argument("--recipes", nargs="+", default=None, help="recipes (instead of a comparison file)")
    ap.add_argument("--flops", type=float, default=None, help="training FLOPs per recipe")
    ap.add_argument("--set", action="append", default=[], dest="overrides", help="override for every recipe")
    ap.add_argument("--out", default=None, help="output folder (default runs/compare)")
    ap.add_argument("--eval-batches", type=int, default=None)
    ap.add_argument("--evals", type=int, default=None)
    args = ap.parse_args(argv)
    try:
        cfg = read_compare_file(Path(args.compare_file)) if args.compare_file else {}
        recipes = args.recipes or cfg.get("recipes")
        if not recipes:
            raise ConfigError("name a comparison file or --recipes")
        budget = float(args.flops or cfg.get("flops") or 0)
        if budget <= 0:
            raise ConfigError("set the training FLOP budget: --flops or compare.flops")
        overrides = list(cfg.get("set", [])) + args.overrides
        out = Path(args.out or cfg.get("out") or "runs/compare")
        eval_batches = args.eval_batches or cfg.get("eval_batches", 16)
        evals = args.evals or cfg.get("evals", 4)
        rows = []
        t0 = time.perf_counter()
        for recipe in recipes:
            rows.append(run_one(recipe, budget, overrides, out, eval_batches, evals))
            write_outputs(rows, out, {"flops": budget, "overrides": overrides})  # partial results survive
        meta = {"flops": budget, "overrides": overrides, "total_wall_s": time.perf_counter() - t0,
                "command": " ".join(["python", "tools/compare.py"] + (argv if argv is not None else sys.argv[1:]))}
        write_outputs(rows, out, meta)
    except BltxError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print((out / "compare.md").read_text())
    print(f"wrote {out / 'compare.md'}, {out / 'compare.json'}, {out / 'compare.png'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
