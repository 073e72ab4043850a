"""Weight initialisation helpers shared by all components (torchtitan-style init_weights).

Layout-independent initial weights. Inside `seeded_init(model, seed)` every parameter of
`model` that a helper here fills is drawn from its own generator, seeded by (seed, the
parameter's name), on its *full* shape, and each rank keeps the slice it owns. So the same
seed gives bitwise the same full weights on one process and on any FSDP / TP mesh, and a
parameter's values do not depend on which other parameters exist or in what order they
are initialised. Big tensors are drawn in blocks of rows, each block from its own seed,
so a rank draws only the blocks that overlap its shard and never holds a full copy of a
large table. (The alternative, DTensor's offset-based RNG, is CUDA-only and depends on
the order of initialisation.)

Outside `seeded_init` (a model built directly on a device, e.g. in a notebook or a test)
the helpers use the global torch RNG, as plain `nn.init` does.
"""

from __future__ import annotations

import hashlib
import math
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Callable

import torch
from torch import nn

from bltx.protocols import InitWeights

# Names that wrappers (activation checkpointing, torch.compile) insert into parameter
# names; removed so the seed of a parameter is the same with and without them.
_WRAPPER_PARTS = ("_checkpoint_wrapped_module.", "_orig_mod.", "_fsdp_wrapped_module.")
# Elements per independently seeded block of rows (4 MiB of fp32).
_BLOCK_ELEMENTS = 1 << 20


@dataclass
class _Seeding:
    seed: int
    names: dict[int, str]


_ACTIVE: ContextVar[_Seeding | None] = ContextVar("bltx_seeded_init", default=None)


def canonical_name(name: str) -> str:
    for part in _WRAPPER_PARTS:
        name = name.replace(part, "")
    return name


@contextmanager
def seeded_init(model: nn.Module, seed: int):
    """Make the helpers below draw each parameter of `model` from (seed, its name)."""
    names = {id(p): canonical_name(n) for n, p in model.named_parameters(remove_duplicate=False)}
    token = _ACTIVE.set(_Seeding(int(seed), names))
    try:
        yield
    finally:
        _ACTIVE.reset(token)


def _block_seed(seed: int, name: str, block: int) -> int:
    digest = hashlib.blake2b(f"{seed}/{name}/{block}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") & ((1 << 63) - 1)


def local_part(tensor: torch.Tensor) -> tuple[torch.Tensor, tuple[int, ...], tuple[int, ...]]:
    """(the local tensor to write, its offset in the full tensor, the full shape). Plain
    tensors are whole."""
    from torch.distributed.tensor import DTensor

    if not isinstance(tensor, DTensor):
        return tensor, (0,) * tensor.ndim, tuple(tensor.shape)
    from torch.distributed.tensor._utils import compute_local_shape_and_global_offset

    shape, offset = compute_local_shape_and_global_offset(tensor.shape, tensor.device_mesh, tensor.placements)
    local = tensor.to_local()
    # FSDP may pad the local storage; the view of the real rows is what we fill.
    if tuple(local.shape) != tuple(shape):
        local = local[tuple(slice(0, s) for s in shape)]
    return local, tuple(offset), tuple(tensor.shape)


@torch.no_grad()
def _fill_seeded(tensor: torch.Tensor, seeding: _Seeding, name: str,
                 fill: Callable[[torch.Tensor, torch.Generator], None]) -> None:
    local, offset, full_shape = local_part(tensor)
    if local.numel() == 0:
        return
    if len(full_shape) == 0:
        gen = torch.Generator(device=local.device).manual_seed(_block_seed(seeding.seed, name, 0))
        fill(local, gen)
        return
    row_numel = math.prod(full_shape[1:]) or 1
    rows_per_block = max(1, _BLOCK_ELEMENTS // row_numel)
    r0, r1 = offset[0], offset[0] + local.shape[0]
    inner = tuple(slice(o, o + n) for o, n in zip(offset[1:], local.shape[1:]))
    for block in range(r0 // rows_per_block, (r1 - 1) // rows_per_block + 1):
        b0 = block * rows_per_block
        b1 = min(full_shape[0], b0 + rows_per_block)
        values = torch.empty((b1 - b0, *full_shape[1:]), dtype=local.dtype, device=local.device)
        gen = torch.Generator(device=local.device).manual_seed(_block_seed(seeding.seed, name, block))
        fill(values, gen)
        lo, hi = max(r0, b0), min(r1, b1)
        local[(slice(lo - r0, hi - r0), *[slice(None)] * len(inner))].copy_(
            values[(slice(lo - b0, hi - b0), *inner)]
        )


def _random_fill(tensor: torch.Tensor, fill: Callable[[torch.Tensor, torch.Generator | None], None]) -> None:
    seeding = _ACTIVE.get()
    name = None if seeding is None else seeding.names.get(id(tensor))
    if name is None:
        with torch.no_grad():
            fill(tensor, None)
    else:
        _fill_seeded(tensor, seeding, name, fill)


def trunc_normal(tensor, std: float) -> None:
    # Truncate at 3 sigma, as the released BLT training code does.
    _random_fill(tensor, lambda t, g: nn.init.trunc_normal_(t, mean=0.0, std=std, a=-3 * std, b=3 * std, generator=g))


def init_linear(lin: nn.Linear, std: float | None = None) -> None:
    """Truncated normal with std = fan_in ** -0.5 unless given."""
    trunc_normal(lin.weight, std if std is not None else lin.in_features ** -0.5)
    if lin.bias is not None:
        nn.init.zeros_(lin.bias)


def init_embedding(emb: nn.Embedding | nn.EmbeddingBag, dim: int | None = None) -> None:
    trunc_normal(emb.weight, (dim or emb.embedding_dim) ** -0.5)


def init_children(module: nn.Module) -> None:
    """Call `init_weights()` on every direct child that initialises itself (bltx/protocols.py
    InitWeights); descend into the others (containers, plain torch layers)."""
    for child in module.children():
        if isinstance(child, InitWeights):
            child.init_weights()
        else:
            init_children(child)
