"""What a fine-tuning recipe changes in the built model: adapters ([adapter]) and frozen
parameters (`training.freeze`), applied by name on the meta-device build, before any
parallelism (so every layout freezes the same parameters and FSDP/TP keep the flags).

    model = build_training_model(recipe, world, build=build_for_training)
    finish_training_model(model, recipe)    # seeded adapter init, flags re-applied

A frozen parameter gets no gradient, hence no optimizer state and no weight decay
(bltx/train/optim.py skips it). With an adapter, everything but the adapters is frozen.
"""

from __future__ import annotations

import fnmatch

from torch import nn

from bltx.errors import ConfigError
from bltx.model.adapters import attach_adapters, init_adapters, is_adapter_param
from bltx.model.init import canonical_name, seeded_init


def matches(name: str, globs) -> bool:
    return any(fnmatch.fnmatchcase(name, g) for g in globs)


def check_globs(names: list[str], globs, key: str) -> None:
    """ConfigError naming the first glob of `key` that matches no parameter name."""
    for glob in globs:
        if not any(fnmatch.fnmatchcase(n, glob) for n in names):
            example = next((n for n in names if "." in n), names[0] if names else "")
            raise ConfigError(f"{key}: '{glob}' matches no parameter (names look like '{example}'); "
                              f"check the glob against the model's parameter names")


def frozen_names(model: nn.Module, recipe) -> set[str]:
    """Canonical names of the parameters the recipe freezes (besides those already frozen)."""
    names = [canonical_name(n) for n, _ in model.named_parameters()]
    globs = list(recipe.training.freeze)
    check_globs(names, globs, "training.freeze")
    if recipe.adapter:
        return {n for n in names if not is_adapter_param(n)}
    return {n for n in names if matches(n, globs)}


def apply_freeze(model: nn.Module, recipe) -> int:
    """Set requires_grad = False on the recipe's frozen parameters; how many were frozen."""
    frozen = frozen_names(model, recipe)
    for name, p in model.named_parameters():
        if canonical_name(name) in frozen:
            p.requires_grad_(False)
    if frozen and not any(p.requires_grad for p in model.parameters()):
        raise ConfigError(f"training.freeze {list(recipe.training.freeze)} freezes every parameter; "
                          f"leave something to train")
    return len(frozen)


def build_for_training(recipe) -> nn.Module:
    """The recipe's model with its adapters and frozen parameters (the `build` of
    bltx.parallel.build_training_model; also what --dry-run counts)."""
    import bltx

    model = bltx.build_model(recipe)
    if recipe.adapter:
        if recipe.parallelism.tp > 1:
            raise ConfigError("[adapter] with parallelism.tp > 1 is not supported (the adapters are not "
                              "tensor-parallel); use FSDP (parallelism.tp = 1)")
        if recipe.float8.enable:
            raise ConfigError("[adapter] with float8.enable is not supported (float8 replaces the Linear "
                              "layers the adapters sit on); set float8.enable = false")
        attach_adapters(model, recipe.adapter)
    apply_freeze(model, recipe)
    return model


def finish_training_model(model: nn.Module, recipe) -> None:
    """After materialize: draw the adapters' initial values from (seed, name), like every
    other weight, and re-apply the frozen flags on the parallelised parameters."""
    if recipe.adapter:
        with seeded_init(model, recipe.job.seed):
            init_adapters(model)
    apply_freeze(model, recipe)
