"""The `lm_eval` task: lm-evaluation-harness tasks on a trained checkpoint.

    python -m bltx.run recipes/tiny.toml --set job.task=lm_eval --set 'lm_eval.tasks=["hellaswag"]'
    python -m bltx.run recipes/tiny.toml --set job.task=lm_eval --set 'lm_eval.tasks=["my_task"]' \
        --set lm_eval.include_path=my_tasks --set lm_eval.include_defaults=false

The checkpoint is `lm_eval.checkpoint`, else `checkpoint.load_path`, else the newest one in
`job.dump_dir`. The model is scored through `bltx.eval.lm_eval_adapter.BltxLM` (bytes as
tokens). `[lm_eval]` keys: tasks, include_path (a folder of local task YAMLs),
include_defaults (index lm-eval's own tasks too), num_fewshot, limit, batch_size,
max_length (0: data.seq_len), bootstrap_iters. The results table is printed and the results
are written to `<dump_dir>/lm_eval.json`. lm-eval is an optional extra: `pip install
'bltx[eval]'` (`make setup` installs it).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

from bltx.config import resolve_path
from bltx.errors import ConfigError, DataError
from bltx.registry import register
from bltx.schema import did_you_mean
from bltx.sections import Recipe
from bltx.train.trained import checkpoint_for, load_trained_model


def _task_manager(recipe: Recipe):
    from lm_eval.tasks import TaskManager

    cfg = recipe.lm_eval
    include = None
    if cfg.include_path:
        include = resolve_path(recipe, cfg.include_path)
        if not Path(include).is_dir():
            raise DataError(f"lm_eval.include_path {include} is not a folder of task YAMLs")
    if include is None and not cfg.include_defaults:
        raise ConfigError("lm_eval.include_defaults = false needs lm_eval.include_path (a folder of task YAMLs)")
    manager = TaskManager(include_path=str(include) if include else None, include_defaults=cfg.include_defaults)
    for name in cfg.tasks:
        if name not in manager.all_tasks:
            where = f" in {include}" if include else ""
            raise ConfigError(f"lm_eval.tasks: no task '{name}'{did_you_mean(name, manager.all_tasks)}{where}; "
                              f"check the name (or lm_eval.include_path / include_defaults)")
    return manager


def results_table(results: dict) -> str:
    from lm_eval.utils import make_table

    table = make_table(results)
    if results.get("groups"):
        table += "\n" + make_table(results, "groups")
    return table


@register("task", "lm_eval")
def lm_eval_task(recipe: Recipe) -> int:
    cfg = recipe.lm_eval
    if not cfg.tasks:
        raise ConfigError("lm_eval.tasks is empty; name lm-eval tasks, e.g. --set 'lm_eval.tasks=[\"hellaswag\"]'")
    try:
        import lm_eval  # noqa: F401
    except ImportError:
        raise ConfigError("job.task = lm_eval needs lm-evaluation-harness: pip install 'bltx[eval]' "
                          "(make setup installs it)") from None
    from lm_eval.evaluator import simple_evaluate

    from bltx.device import pick_device
    from bltx.eval.lm_eval_adapter import BltxLM

    logging.getLogger("lm_eval").setLevel(logging.WARNING)
    manager = _task_manager(recipe)
    device = pick_device(recipe.job.device)
    ckpt = checkpoint_for(recipe, cfg.checkpoint, "lm_eval")
    model = load_trained_model(recipe, ckpt, device)
    lm = BltxLM(model, device, recipe.training.dtype, cfg.batch_size,
                cfg.max_length or recipe.data.seq_len, recipe.data.add_bos, recipe.job.seed)
    limit = None if cfg.limit is None else (int(cfg.limit) if cfg.limit >= 1 else cfg.limit)
    results = simple_evaluate(
        model=lm, tasks=list(cfg.tasks), num_fewshot=cfg.num_fewshot, limit=limit,
        bootstrap_iters=cfg.bootstrap_iters, task_manager=manager, log_samples=False,
        random_seed=recipe.job.seed, numpy_random_seed=recipe.job.seed,
        torch_random_seed=recipe.job.seed, fewshot_random_seed=recipe.job.seed,
    )
    keep = ("results", "groups", "group_subtasks", "configs", "versions", "n-shot", "higher_is_better", "n-samples")
    out = {"checkpoint": str(ckpt), "tasks": list(cfg.tasks), "limit": cfg.limit,
           **{k: results[k] for k in keep if k in results}}
    dump = Path(recipe.job.dump_dir)
    dump.mkdir(parents=True, exist_ok=True)
    path = dump / "lm_eval.json"
    path.write_text(json.dumps(out, indent=1, default=str) + "\n", encoding="utf-8")
    print(f"lm_eval {ckpt}:\n{results_table(results)}\nwrote {path}", flush=True)
    return 0
