"""Command line: `python -m bltx.run RECIPE [--set key=value]... [--dry-run] [--print-config]`.

Loads and validates the recipe, then runs the registered task named by `job.task` (train,
eval, generate, ... and any a plugin registers). Bad input of any kind ends with one line on
stderr and exit code 2.
"""

from __future__ import annotations

import argparse
import sys

from bltx.errors import BltxError


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
        print(f"error: {exc}", file=sys.stderr)
        return 2


def run(args: argparse.Namespace) -> int:
    from bltx.config import load_recipe, recipe_to_toml
    from bltx.registry import get_registry

    recipe = load_recipe(args.recipe, args.overrides)
    if args.print_config:
        print(recipe_to_toml(recipe))
        return 0
    if args.dry_run:
        from bltx.plan import print_plan

        print_plan(recipe, world_size=args.world_size)
        return 0
    task = get_registry("task").get(recipe.job.task, where="job.task")
    result = task(recipe)
    return int(result or 0)


if __name__ == "__main__":
    sys.exit(main())
