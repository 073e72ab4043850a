"""Pick the entropy threshold that gives a target mean patch length (entropy workflow step 2).

    python tools/calibrate_threshold.py                      # recipes/entropy_tiny.toml
    python tools/calibrate_threshold.py RECIPE --target 4.5 --checkpoint runs/entropy_tiny \
        --out toml_configs/patcher/calibrated.toml --weights-out runs/entropy_tiny/entropy_model.pt

A thin command line over the `calibrate` task (bltx/tasks/entropy.py): RECIPE is the
entropy model's training recipe; its newest checkpoint (or --checkpoint) is loaded, the
threshold is bisected on the validation split, and a `[model.patcher]` fragment plus the
entropy model's weights are written. Any recipe value can be set with --set KEY=VALUE.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # run from a checkout without installing

from bltx.run import main as run_main  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("recipe", nargs="?", default=str(ROOT / "recipes" / "entropy_tiny.toml"))
    parser.add_argument("--target", type=float, help="target mean patch length in bytes")
    parser.add_argument("--rule", choices=["global", "monotonic"])
    parser.add_argument("--checkpoint", help="entropy model checkpoint (default: newest in job.dump_dir)")
    parser.add_argument("--out", help="recipe fragment to write")
    parser.add_argument("--weights-out", help="where to write the entropy model's weights (.pt)")
    parser.add_argument("--dtype", choices=["float32", "bfloat16"], help="dtype of the written weights")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    args = parser.parse_args(argv)
    sets = ["job.task=calibrate"]
    for key, value in (
        ("calibrate.target_patch_length", args.target),
        ("calibrate.rule", args.rule and f'"{args.rule}"'),
        ("checkpoint.load_path", args.checkpoint and f'"{args.checkpoint}"'),
        ("calibrate.output", args.out and f'"{args.out}"'),
        ("calibrate.weights_out", args.weights_out and f'"{args.weights_out}"'),
        ("calibrate.weights_dtype", args.dtype and f'"{args.dtype}"'),
    ):
        if value is not None:
            sets.append(f"{key}={value}")
    cli = [args.recipe]
    for s in sets + args.overrides:
        cli += ["--set", s]
    return run_main(cli)


if __name__ == "__main__":
    sys.exit(main())
