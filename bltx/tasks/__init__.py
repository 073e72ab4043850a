"""The `job.task` entry points, one room: train, eval, generate, calibrate,
precompute_entropies, cute, noised_eval. A task is a function `task(recipe) -> exit code`
registered with `@register("task", NAME)`; it wires engine pieces (bltx/train, eval, infer,
data) together and holds no engine logic of its own. The registry imports these modules on
the first task lookup (bltx/registry.py BUILTINS)."""
