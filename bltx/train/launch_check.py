"""Before any data is read or weight allocated: can this launch run this recipe at all?

A recipe sized for many GPUs started on a laptop should say what it needs, in one line,
instead of failing deep inside the mesh setup or the allocator.
"""

from __future__ import annotations

import os

import torch

import bltx

from bltx.errors import ConfigError
from bltx.sections import Recipe
from bltx.device import pick_device

GIB = 1024**3


def device_memory_bytes(device: torch.device) -> int | None:
    """Memory of one device of this launch: the GPU's, or the host's RAM for CPU runs."""
    if device.type == "cuda":
        return torch.cuda.get_device_properties(device).total_memory
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return None


def check_launch(recipe: Recipe) -> None:
    """ConfigError when the launch has too few ranks for the parallel degrees, or when the
    weights, gradients and optimizer state alone would not fit one device."""
    from bltx.parallel.memory import estimate_memory
    from bltx.parallel.mesh import minimum_world_size, resolve_degrees

    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    try:
        resolve_degrees(recipe.parallelism, world_size)
    except ConfigError as exc:
        need = minimum_world_size(recipe)
        raise ConfigError(
            f"this recipe needs a multiple of {need} processes for its parallel degrees and this launch "
            f"has {world_size} ({exc}); start it with torchrun --nproc_per_node N (see --dry-run)"
        ) from None
    device = pick_device(recipe.job.device, int(os.environ.get("LOCAL_RANK", "0")))
    available = device_memory_bytes(device)
    if available is None:
        return
    with torch.device("meta"):  # sizes only: no memory, no init
        model = bltx.build_model(recipe)
    needed = estimate_memory(model, recipe, world_size).total
    if needed > available:
        raise ConfigError(
            f"this recipe needs about {needed / GIB:.1f} GiB per rank for weights, gradients and "
            f"optimizer state on {world_size} rank(s) of {device.type} ({available / GIB:.1f} GiB each); "
            f"launch on more or larger devices (python -m bltx.run {recipe.source or 'RECIPE'} --dry-run "
            f"--world-size N shows the memory per rank)"
        )
