"""Command line: `python -m bltx.run RECIPE [--set key=value]... [--dry-run] [--print-config]`.

Loads and validates the recipe, then runs the registered task named by `job.task` (train,
eval, generate, ... and any a plugin registers). Bad input of any kind ends with one line on
stderr and exit code 2.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from bltx.errors import BltxError, ConfigError


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bltx.run",
        description="Run a bltx recipe (train, eval, generate, ... as job.task says).",
    )
    parser.add_argument("recipe", help="path to a TOML recipe, e.g. recipes/tiny.toml")
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a recipe value, e.g. --set training.steps=50 (repeatable)",
    )
    parser.add_argument(
        "--dry-run",
        action="store_true",
        help="build the model on the meta device and print the plan; run nothing",
    )
    parser.add_argument(
        "--world-size",
        type=int,
        default=0,
        metavar="N",
        help="with --dry-run: plan for N ranks (default: $WORLD_SIZE, else the fewest the "
        "recipe's parallel degrees need)",
    )
    parser.add_argument(
        "--print-config", action="store_true", help="print the merged recipe as TOML and exit"
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        return run(args)
    except BltxError as exc:
        return fail(str(exc))
    except KeyboardInterrupt:
        return fail("interrupted (Ctrl-C); completed checkpoints are kept, run the same command to resume", 130)
    except OSError as exc:  # disk full, permissions, a vanished file: the system said no
        return fail(f"{os_error_text(exc)}; fix that and run again (completed checkpoints are kept)")
    except MemoryError:
        return fail("out of host memory; lower data.batch_size, data.seq_len or generate.max_bytes")


def fail(message: str, code: int = 2) -> int:
    print(f"error: {' '.join(message.split())}", file=sys.stderr, flush=True)
    return code


def os_error_text(exc: OSError) -> str:
    reason = exc.strerror or str(exc) or type(exc).__name__
    names = [n for n in (exc.filename, exc.filename2) if n]
    return f"{reason}: {' -> '.join(map(str, names))}" if names else reason


def check_dump_dir(path: str) -> None:
    """ConfigError (one line) when job.dump_dir cannot be a folder bltx writes to. Checked
    without creating it: the tasks create it when they first write."""
    p = Path(path)
    if p.exists() and not p.is_dir():
        raise ConfigError(f"job.dump_dir {p} exists and is not a folder; set job.dump_dir to a folder path")
    parent = p
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir():
        raise ConfigError(f"job.dump_dir {p} cannot be created: {parent} is a file; set job.dump_dir elsewhere")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise ConfigError(f"job.dump_dir {p} cannot be created or written: {parent} is not writable; set job.dump_dir elsewhere")


def run(args: argparse.Namespace) -> int:
    from bltx.config import load_recipe, recipe_to_toml
    from bltx.registry import get_registry

    recipe = load_recipe(args.recipe, args.overrides)
    if recipe.init.path:  # a HF folder's config.json gives the model's shape
        from bltx.train.init_weights import adopt_init_model

        recipe = adopt_init_model(recipe, args.overrides)
    if args.print_config:
        print(recipe_to_toml(recipe))
        return 0
    if args.dry_run:
        from bltx.dry_run import print_dry_run

        if args.world_size < 0:
            raise ConfigError(f"--world-size {args.world_size}: must be >= 1 (or 0: as the recipe's degrees need)")

        print_dry_run(recipe, world_size=args.world_size)
        return 0
    task = get_registry("task").get(recipe.job.task, where="job.task")
    check_dump_dir(recipe.job.dump_dir)
    result = task(recipe)
    return int(result or 0)


if __name__ == "__main__":
    sys.exit(main())
