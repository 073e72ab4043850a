"""The byteify worked example end to end (issue 23; README "Byteifying a subword LM"):
train a small subword source, byteify it in two stages, train a BLT of the same shape from
scratch on the same training FLOPs, and compare all of them on the held-out last 5%.

    python tools/byteify_compare.py [--out runs/byteify] [--budget 0.14] [--vocab 4096]

Steps, each through the command a user runs:
  0. `python tools/make_source.py --out OUT/source [--vocab N]`: a LlamaForCausalLM and its
     byte-level BPE tokenizer, trained on the corpus's first 95%, saved with save_pretrained
     (skipped when OUT/source/source.json exists);
  1a. `python -m bltx.run recipes/byteify/predictor.toml`: the boundary predictor alone;
  1. `python -m bltx.run recipes/byteify/stage1.toml`: the source's blocks frozen;
  2. `python -m bltx.run recipes/byteify/stage2.toml`: end to end from stage 1;
  3. `python -m bltx.run recipes/byteify/scratch.toml`: the same shape from random weights,
     for the training FLOPs of stages 1a + 1 + 2;
  then `job.task=eval` with `eval.steps=0` on each (every held-out window).

Budgets: stages 1a + 1 + 2 get `--budget` times the source's training FLOPs (measured by
make_source with FlopCounterMode); stage 1a runs its recipe's steps, and `--stage1-share`
of what is left goes to stage 1; each stage's steps
follow from bltx's FLOP counter (training FLOPs per byte of the model as the trainer runs
it: the frozen latent counts forward and the backward flowing through it, the teacher pass
forward only) at the mean patch length measured on training windows. Stage 2's FLOPs are
accounted afterwards at the patch length it realised (its metrics log), as compare.py does
for learned chunking.

The source's bpb is scored on the same held-out windows as the byte models: each window's
target bytes tokenized by the source tokenizer, its EOS token as the only context, the
summed token NLL over the window's bytes (as the BPE baseline counts it).

Writes OUT/compare.json (source_bpb, stage1_bpb, byteified_bpb, scratch_bpb,
source_train_flops, byteify_train_flops, and the details) and OUT/compare.png (held-out bpb
against training FLOPs).
"""

from __future__ import annotations

import argparse
import json
import math
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from tools.make_source import DEFAULT_VOCAB  # noqa: E402

RECIPES = ROOT / "recipes" / "byteify"
# A source small enough for the smoke test (tests/interop/test_byteify_compare.py).
QUICK_SOURCE = ["--steps", "30", "--dim", "32", "--layers", "1", "--heads", "2", "--ctx", "64", "--batch", "4"]
QUICK_VOCAB = 300


def run(cmd: list[str]) -> None:
    print("$ " + " ".join(cmd), flush=True)
    subprocess.run(cmd, check=True, cwd=ROOT)


def bltx_run(recipe: Path, overrides: list[str]) -> None:
    run([sys.executable, "-m", "bltx.run", str(recipe), *[a for o in overrides for a in ("--set", o)]])


def toml_str(value) -> str:
    return json.dumps(str(value))


def plan_stage(recipe: Path, overrides: list[str]) -> dict:
    """Training FLOPs per byte and bytes per step of `recipe` as the trainer would run it,
    at the mean patch length of its boundaries on a few training windows."""
    from bltx.config import load_recipe
    from bltx.data.loader import build_data_for_recipe
    from bltx.eval.flops import measure_mean_patch_length, total_flops_per_byte
    from bltx.train.finetune import build_for_training

    r = load_recipe(recipe, overrides)
    torch.manual_seed(r.job.seed)
    model = build_for_training(r)
    batches = build_data_for_recipe(r).train_batches(r.data.batch_size, r.job.seed)
    length = measure_mean_patch_length(model, [next(batches) for _ in range(4)])
    seq_len = r.data.seq_len
    return {"patch_length": length, "seq_len": seq_len, "steps": r.training.steps,
            "bytes_per_step": r.data.batch_size * seq_len * r.training.grad_accum,
            "train_fpb": total_flops_per_byte(model, length, seq_len, training=True), "model": model}


def realised_patch_length(dump: Path) -> float | None:
    rows = [json.loads(x) for x in (dump / "metrics.jsonl").read_text().splitlines() if x.strip()]
    seen = [r["mean_patch_length"] for r in rows if r.get("split") == "train" and r.get("mean_patch_length")]
    return sum(seen) / len(seen) if seen else None


def val_curve(dump: Path, flops_per_step: float, offset: float = 0.0) -> list[list[float]]:
    rows = [json.loads(x) for x in (dump / "metrics.jsonl").read_text().splitlines() if x.strip()]
    return [[offset + r["step"] * flops_per_step, r["val_bpb"]] for r in rows
            if r.get("split") == "val" and "val_bpb" in r]


def train_and_eval(recipe: Path, dump: Path, steps: int, overrides: list[str], evaluate: bool = True) -> dict:
    """Train `recipe` for `steps` in a fresh `dump`, then (with `evaluate`) score it on every
    held-out window; without, the last logged training row (stage 1a logs the predictor's)."""
    if dump.exists():
        shutil.rmtree(dump)  # a fresh run each time: never resume a stale one
    common = [*overrides, f"job.dump_dir={toml_str(dump)}", f"training.steps={steps}",
              f"checkpoint.interval={steps}", "checkpoint.keep_latest=1",
              f"eval.interval={max(1, steps // 4) if evaluate else steps}", f"metrics.log_interval={max(1, steps // 10)}",
              "metrics.progress_bar=false", f"lr_scheduler.warmup_steps={max(1, min(20, steps // 10))}"]
    t0 = time.perf_counter()
    bltx_run(recipe, common)
    wall = time.perf_counter() - t0
    if not evaluate:
        rows = [json.loads(x) for x in (dump / "metrics.jsonl").read_text().splitlines() if x.strip()]
        return {**[r for r in rows if r.get("split") == "train"][-1], "wall_s": wall}
    bltx_run(recipe, [*common, "job.task=\"eval\"", "eval.steps=0"])
    result = json.loads((dump / "eval.json").read_text())
    result["wall_s"] = wall
    return result


@torch.no_grad()
def source_bpb(source: Path, recipe: Path, overrides: list[str]) -> dict:
    """The source's held-out bpb on the byte models' evaluation windows (module doc)."""
    import transformers

    from bltx.bytes import OFFSET
    from bltx.config import load_recipe
    from bltx.data.loader import build_data_for_recipe, validation_batches
    from bltx.interop.byteify.vocab import SourceVocab
    from bltx.interop.source_tokenizer import SourceTokenizer

    r = load_recipe(recipe, overrides)
    model = transformers.AutoModelForCausalLM.from_pretrained(source).eval()
    vocab = SourceVocab(SourceTokenizer(source))
    context = vocab.eos_token
    nll, n_bytes, n_tokens = 0.0, 0, 0
    for batch in validation_batches(build_data_for_recipe(r).validation, r.data.batch_size, 0):
        for row in batch["targets"].tolist():
            data = bytes(v - OFFSET for v in row if v >= OFFSET)
            tokens = [context, *vocab.tokens(data)]
            logits = model(torch.tensor([tokens])).logits[0, :-1].float()
            nll += float(torch.nn.functional.cross_entropy(logits, torch.tensor(tokens[1:]), reduction="sum"))
            n_bytes += len(data)
            n_tokens += len(tokens) - 1
    return {"bpb": nll / math.log(2) / n_bytes, "bytes": n_bytes, "bytes_per_token": n_bytes / n_tokens}


# Buckets of bytes by how far back the last boundary lies where the tokenizer and the
# predicted patches disagree (0: at that byte; the last one past 32 is "far").
DISTANCE_BUCKETS = ((0, 0), (1, 2), (3, 8), (9, 32), (33, None))


@torch.no_grad()
def gap_by_distance(reference_run: Path, byteified_run: Path, recipe: Path, overrides: list[str]) -> dict:
    """Where the byteified model's held-out bits go, against a reference: on every held-out
    window, each byte's cost (its boundary and the byte after it, as eval counts them) with
    stage 1's run on the tokenizer's boundaries (the reference) and stage 2's run on its
    predicted ones, summed in buckets by the bytes since the last boundary where the
    tokenizer and the predicted patches disagree (DISTANCE_BUCKETS). Also the predictor's
    own agreement with the tokenizer (what stage 1a trains) and the predicted patches'."""
    import bltx
    from bltx.bytes import IGNORE_ID, byte_targets
    from bltx.config import load_recipe
    from bltx.data.loader import build_data_for_recipe, validation_batches
    from bltx.train.loss import autocast_context

    r = load_recipe(recipe, overrides)
    reference, byteified = bltx.load(reference_run).eval(), bltx.load(byteified_run).eval()
    reference.cfg.boundaries, byteified.cfg.boundaries = "tokenizer", "predictor"
    counts = {"bytes": 0, "predictor": 0, "boundaries": 0}
    sums = {(bucket, what): 0.0 for bucket in DISTANCE_BUCKETS
            for what in ("bytes", "reference", "reference_boundary", "byteified", "byteified_boundary")}
    for batch in validation_batches(build_data_for_recipe(r).validation, r.data.batch_size, 0):
        ids, targets = batch["ids"], batch["targets"]
        ext = torch.cat([ids, targets[:, -1:]], dim=1)
        tokenizer = reference.boundaries(ids, targets).ends
        predicted = byteified.boundaries(ids, targets).ends
        raw = byteified.predictor(ext[:, :-1], ext[:, 1:]) > byteified._threshold_logit
        # Eval's bits per byte: the cost of every scored target (EOS included) over the bytes.
        scored, is_byte = targets != IGNORE_ID, byte_targets(targets)
        counts["bytes"] += int(is_byte.sum())
        counts["predictor"] += int(((raw == tokenizer) & is_byte).sum())
        counts["boundaries"] += int(((predicted == tokenizer) & is_byte).sum())
        position = torch.arange(ids.shape[1], device=ids.device).expand_as(ids)
        # Bytes before the window's first disagreement count as far from one ("> 32").
        last = torch.where(predicted != tokenizer, position, -10**6).cummax(dim=1).values
        since = position - last
        # Each model's boundaries as the whole window gives them, passed in: leaving targets
        # out must not move them (the tokenizer's would, at the window's last word).
        starts = {"reference": F.pad(tokenizer, (1, 0), value=True), "byteified": F.pad(predicted, (1, 0), value=True)}
        for lo, hi in DISTANCE_BUCKETS:
            where = scored & (since >= lo) & ((since <= hi) if hi is not None else True)
            if not bool(where.any()):
                continue
            masked = torch.where(where, targets, IGNORE_ID)
            sums[(lo, hi), "bytes"] += int((where & is_byte).sum())
            for name, model in (("reference", reference), ("byteified", byteified)):
                with autocast_context(ids.device, r.training.dtype):
                    out = model(ids, masked, starts=starts[name])
                sums[(lo, hi), name] += float(out.nll) / math.log(2)
                # boundary_bpb is per target scored
                sums[(lo, hi), f"{name}_boundary"] += float(out.stats["boundary_bpb"]) * int(where.sum())
    total = counts["bytes"]
    excess = sum(sums[b, "byteified"] - sums[b, "reference"] for b in DISTANCE_BUCKETS)
    rows = []
    for lo, hi in DISTANCE_BUCKETS:
        n = sums[(lo, hi), "bytes"]
        if not n:
            continue
        gap = sums[(lo, hi), "byteified"] - sums[(lo, hi), "reference"]
        label = f">{lo - 1}" if hi is None else f"{lo}" if lo == hi else f"{lo}-{hi}"
        rows.append({"bytes_since_disagreement": label,
                     "fraction": n / total,
                     **{f"{name}_bpb": sums[(lo, hi), name] / n for name in
                        ("reference", "reference_boundary", "byteified", "byteified_boundary")},
                     "excess_bits": gap, "excess_share": gap / excess if excess else 0.0})
    return {"predictor_agreement": counts["predictor"] / total, "boundary_agreement": counts["boundaries"] / total,
            "excess_bpb": excess / total, "by_distance": rows}


def latent_overrides(source: Path) -> list[str]:
    """The scratch latent's sizes: the source's (a BLT of the byteified model's shape)."""
    from bltx.interop.llama import latent_dims, read_llama_config

    dims = latent_dims(read_llama_config(source))
    return [f"model.latent.{k}={dims[k]}" for k in ("dim", "n_layers", "n_heads", "n_kv_heads", "ffn_dim", "norm_eps",
                                                     "rope_theta")]


def plot(out: Path, result: dict) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib not installed: no plot (pip install matplotlib)", file=sys.stderr)
        return
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    curves = [("byteified (stage 1, then 2)", result["byteify_curve"])]
    if result.get("learned_spelling"):
        curves.append(("byteified, spelling learned alone", result["learned_spelling"]["curve"]))
    curves.append(("BLT from scratch", result["scratch_curve"]))
    for label, pts in curves:
        if pts:
            ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", label=label)
    ax.axhline(result["source_bpb"], color="k", linestyle="--",
               label=f"source ({result['source_train_flops']:.2g} training FLOPs)")
    ax.set_xscale("log")
    ax.set_xlabel("training FLOPs (after the source)")
    ax.set_ylabel("held-out bits per byte")
    ax.legend()
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(out / "compare.png", dpi=120)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default="runs/byteify", help="output folder (default runs/byteify)")
    ap.add_argument("--budget", type=float, default=0.14,
                    help="training FLOPs of stages 1a + 1 + 2 as a fraction of the source's (default 0.14; the issue allows 0.15)")
    ap.add_argument("--stage1-share", type=float, default=0.1,
                    help="stage 1's share of the budget left after stage 1a (the predictor)")
    ap.add_argument("--predictor-steps", type=int, default=0,
                    help="stage 1a's steps (default: recipes/byteify/predictor.toml's)")
    ap.add_argument("--min-steps", type=int, default=3, help="at least this many steps per run")
    ap.add_argument("--vocab", type=int, default=0,
                    help="the source tokenizer's vocabulary (default: tools/make_source.py's, 4,096; 300 with --quick)")
    ap.add_argument("--quick", action="store_true", help="a tiny source and runs: the smoke test")
    ap.add_argument("--skip-learned-spelling", action="store_true",
                    help="skip the variant whose decoder learns spelling alone (model.spelling_prior = false)")
    ap.add_argument("--set", dest="overrides", action="append", default=[],
                    help="KEY=VALUE applied to every bltx run (e.g. data.batch_size=4)")
    args = ap.parse_args(argv)
    out = Path(args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    source = out / "source"
    t0 = time.perf_counter()

    wanted = args.vocab or (QUICK_VOCAB if args.quick else DEFAULT_VOCAB)
    if not (source / "source.json").is_file():
        run([sys.executable, "tools/make_source.py", "--out", str(source), *(QUICK_SOURCE if args.quick else []),
             "--vocab", str(wanted)])
    src = json.loads((source / "source.json").read_text())
    # A source left from another vocabulary (an earlier default, another --vocab) would be
    # compared under this run's numbers: refused, whether --vocab was given or not.
    if src["config"]["vocab"] != wanted:
        print(f"error: {source} was made with --vocab {src['config']['vocab']}, not {wanted}; "
              f"pass another --out (or delete that folder)", file=sys.stderr)
        return 2
    base = [*args.overrides, f"model.source={toml_str(source)}"]
    with_blocks = [*base, f"model.latent.path={toml_str(source)}"]
    budget = args.budget * src["train_flops"]

    main_run = byteify(out, "", with_blocks, budget, args)
    learned = None if args.skip_learned_spelling else byteify(
        out, "_learned_spelling", [*with_blocks, "model.spelling_prior=false"], budget, args)
    stage1, stage2, byteify_flops = main_run["stage1"], main_run["stage2"], main_run["flops"]
    steps1, steps2 = main_run["steps1"], main_run["steps2"]
    flops_step1, flops_step2 = main_run["flops_step1"], main_run["flops_step2"]

    scratch_overrides = [*base, *latent_overrides(source)]
    plan3 = plan_stage(RECIPES / "scratch.toml", scratch_overrides)
    flops_step3 = plan3["train_fpb"] * plan3["bytes_per_step"]
    steps3 = max(args.min_steps, round(byteify_flops / flops_step3))
    scratch = train_and_eval(RECIPES / "scratch.toml", out / "scratch", steps3, scratch_overrides)

    source_eval = source_bpb(source, RECIPES / "stage1.toml", with_blocks)
    boundaries = gap_by_distance(out / "stage1", out / "stage2", RECIPES / "stage1.toml", with_blocks)
    result = {
        "source_bpb": source_eval["bpb"],
        "stage1_bpb": stage1["bpb"],
        "byteified_bpb": stage2["bpb"],
        "scratch_bpb": scratch["bpb"],
        "source_train_flops": src["train_flops"],
        "byteify_train_flops": byteify_flops,
        "scratch_train_flops": steps3 * flops_step3,
        "byteify_flops_fraction": byteify_flops / src["train_flops"],
        "byteified_vs_source": stage2["bpb"] / source_eval["bpb"] - 1.0,
        "held_out_bytes": source_eval["bytes"],
        "source_vocab_size": src["vocab_size"],
        "source_bytes_per_token": source_eval["bytes_per_token"],
        "steps": {"predictor": main_run["steps0"], "stage1": steps1, "stage2": steps2, "scratch": steps3,
                  "source": src["steps"]},
        "predictor_train_agreement": main_run["predictor"].get("predictor_agreement"),  # stage 1a, last logged
        "held_out_boundaries": boundaries,  # stage 1 against stage 2: gap_by_distance's doc
        "predictor_train_flops": main_run["flops0"],
        "mean_patch_length": {"stage1": stage1.get("mean_patch_length"), "stage2": stage2.get("mean_patch_length"),
                              "scratch": scratch.get("mean_patch_length")},
        "wall_s": {"source": src.get("seconds"), "predictor": main_run["predictor"]["wall_s"], "stage1": stage1["wall_s"], "stage2": stage2["wall_s"],
                   "scratch": scratch["wall_s"], "total": time.perf_counter() - t0},
        "source": src,
        "byteify_curve": main_run["curve"],
        "learned_spelling": None if learned is None else {
            "stage1_bpb": learned["stage1"]["bpb"], "byteified_bpb": learned["stage2"]["bpb"],
            "byteify_train_flops": learned["flops"], "steps": {"stage1": learned["steps1"], "stage2": learned["steps2"]},
            "curve": learned["curve"]},
        "scratch_curve": val_curve(out / "scratch", flops_step3),
        "machine": machine(),
    }
    (out / "compare.json").write_text(json.dumps(result, indent=1) + "\n")
    plot(out, result)
    print(f"\n| model | held-out bpb | training FLOPs |\n|---|---|---|\n"
          f"| source | {result['source_bpb']:.4f} | {result['source_train_flops']:.3g} |\n"
          f"| byteified, stage 1a + 1 | {result['stage1_bpb']:.4f} | {main_run['flops0'] + steps1 * flops_step1:.3g} |\n"
          f"| byteified, stage 2 | {result['byteified_bpb']:.4f} | {byteify_flops:.3g} (total) |\n"
          + (f"| byteified, spelling learned alone: stage 1 / 2 | {learned['stage1']['bpb']:.4f} / "
             f"{learned['stage2']['bpb']:.4f} | {learned['flops']:.3g} |\n" if learned else "")
          + f"| BLT from scratch | {result['scratch_bpb']:.4f} | {result['scratch_train_flops']:.3g} |\n"
          f"\nbyteified / source - 1 = {result['byteified_vs_source']:+.2%}; byteify FLOPs = "
          f"{result['byteify_flops_fraction']:.1%} of the source's; wrote {out / 'compare.json'}")
    return 0


def byteify(out: Path, suffix: str, with_blocks: list[str], budget: float, args) -> dict:
    """Stages 1a, 1 and 2 within `budget` training FLOPs (module doc), in OUT/predictorSUFFIX,
    OUT/stage1SUFFIX and OUT/stage2SUFFIX."""
    dump0, dump1, dump2 = out / f"predictor{suffix}", out / f"stage1{suffix}", out / f"stage2{suffix}"
    plan0 = plan_stage(RECIPES / "predictor.toml", with_blocks)
    flops_step0 = plan0["train_fpb"] * plan0["bytes_per_step"]
    steps0 = args.predictor_steps or (args.min_steps if args.quick else plan0["steps"])
    predictor = train_and_eval(RECIPES / "predictor.toml", dump0, steps0, with_blocks, evaluate=False)
    budget -= steps0 * flops_step0
    stage1_overrides = [*with_blocks, f"init.path={toml_str(dump0)}"]
    plan1 = plan_stage(RECIPES / "stage1.toml", stage1_overrides)
    flops_step1 = plan1["train_fpb"] * plan1["bytes_per_step"]
    steps1 = max(args.min_steps, int(budget * args.stage1_share / flops_step1))
    stage1 = train_and_eval(RECIPES / "stage1.toml", dump1, steps1, stage1_overrides)
    stage2_overrides = [*with_blocks, f"init.path={toml_str(dump1)}"]
    plan2 = plan_stage(RECIPES / "stage2.toml", stage2_overrides)
    # Planned at the tokenizer's patch length (the predictor learned to imitate it) and
    # accounted at the length stage 2 realised.
    fpb2_planned = plan_fpb_at(plan2["model"], plan1["patch_length"], plan2["seq_len"])
    steps2 = max(args.min_steps, int((budget - steps1 * flops_step1) / (fpb2_planned * plan2["bytes_per_step"])))
    stage2 = train_and_eval(RECIPES / "stage2.toml", dump2, steps2, stage2_overrides)
    length2 = realised_patch_length(dump2) or plan1["patch_length"]
    flops_step2 = plan_fpb_at(plan2["model"], length2, plan2["seq_len"]) * plan2["bytes_per_step"]
    flops0 = steps0 * flops_step0
    return {"predictor": predictor, "stage1": stage1, "stage2": stage2, "steps0": steps0, "steps1": steps1,
            "steps2": steps2, "flops_step1": flops_step1, "flops_step2": flops_step2, "flops0": flops0,
            "flops": flops0 + steps1 * flops_step1 + steps2 * flops_step2,
            "curve": val_curve(dump1, flops_step1, flops0) + val_curve(dump2, flops_step2, flops0 + steps1 * flops_step1)}


def plan_fpb_at(model, patch_length: float, seq_len: int) -> float:
    from bltx.eval.flops import total_flops_per_byte

    return total_flops_per_byte(model, patch_length, seq_len, training=True)


def machine() -> dict:
    import os
    import platform

    flags = ""
    try:
        info = Path("/proc/cpuinfo").read_text()
        flags = next((line.split(":", 1)[1] for line in info.splitlines() if line.startswith("flags")), "")
    except OSError:
        pass
    return {"cpu": platform.processor() or platform.machine(), "threads": torch.get_num_threads(),
            "cores": os.cpu_count(), "avx512_bf16": "avx512_bf16" in flags, "amx": "amx_bf16" in flags,
            "torch": torch.__version__}


if __name__ == "__main__":
    raise SystemExit(main())
