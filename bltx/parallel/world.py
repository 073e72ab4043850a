"""This process's place in a (possibly) parallel run: ranks, device, mesh.

    world = World.from_env(recipe.job.device, recipe.parallelism)   # under torchrun or not
    shard = data[world.dp_rank :: world.dp_size]                     # each dp rank its batch
    logged = world.mean(loss.detach())                               # average over dp ranks

Under torchrun (WORLD_SIZE > 1) the process group is started here: gloo on CPU, nccl on
CUDA. A single process never touches torch.distributed, so CPU runs and tests need no
process group. Tensor-parallel ranks see the same batch, so data sharding and loss
averaging use the data-parallel rank and size, never the global ones.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

import torch
import torch.distributed as dist

from bltx.device import pick_device  # noqa: F401  (re-exported for callers)

from bltx.errors import ConfigError
from bltx.parallel.mesh import Degrees, build_mesh, fsdp_mesh, resolve_degrees


def init_process_group(device: torch.device) -> None:
    """Start the default process group from torchrun's env (no-op if already started)."""
    if not dist.is_initialized():
        backend = "nccl" if device.type == "cuda" else "gloo"
        kwargs = {"device_id": device} if device.type == "cuda" else {}
        dist.init_process_group(backend, **kwargs)


@dataclass
class World:
    """Ranks, device and device mesh of this process.

    `mesh` is None on a single process. `dp_rank`/`dp_size` pick the data shard and scale
    the loss average; `tp_rank`/`tp_size` are for code that must know its TP slice.
    """

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    degrees: Degrees = field(default_factory=Degrees)
    mesh: object | None = None

    @classmethod
    def from_env(cls, device: str = "auto", parallelism=None) -> "World":
        """Read RANK/WORLD_SIZE/LOCAL_RANK (torchrun), start the process group and build
        the mesh from `parallelism` (a ParallelismConfig; None: pure data parallel)."""
        from bltx.sections import ParallelismConfig

        rank = int(os.environ.get("RANK", 0))
        world_size = int(os.environ.get("WORLD_SIZE", 1))
        local_rank = int(os.environ.get("LOCAL_RANK", 0))
        dev = pick_device(device, local_rank)
        degrees = resolve_degrees(parallelism or ParallelismConfig(), world_size)
        if dev.type == "cuda":
            torch.cuda.set_device(dev)
        mesh = None
        if world_size > 1:
            init_process_group(dev)
            mesh = build_mesh(degrees, dev.type)
        return cls(rank, world_size, local_rank, dev, degrees, mesh)

    # -- who am I ---------------------------------------------------------------------------

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    @property
    def dp_size(self) -> int:
        return self.degrees.dp

    @property
    def dp_rank(self) -> int:
        return 0 if self.mesh is None else self.mesh["dp"].get_local_rank()

    @property
    def tp_size(self) -> int:
        return self.degrees.tp

    @property
    def tp_rank(self) -> int:
        return 0 if self.mesh is None else self.mesh["tp"].get_local_rank()

    @property
    def tp_mesh(self):
        return None if self.mesh is None or self.degrees.tp == 1 else self.mesh["tp"]

    @property
    def dp_mesh(self):
        """Mesh for fully_shard (None when there is no data parallelism)."""
        return None if self.mesh is None or not self.degrees.fsdp else fsdp_mesh(self.mesh, self.degrees)

    # -- collectives used by the trainer -----------------------------------------------------

    def sum(self, value: torch.Tensor) -> torch.Tensor:
        """Sum a tensor over the data-parallel ranks (identity without them)."""
        if self.mesh is None or self.dp_size == 1:
            return value
        value = value.detach().clone()
        dist.all_reduce(value, op=dist.ReduceOp.SUM, group=self.mesh["dp"].get_group())
        return value

    def mean(self, value: torch.Tensor) -> torch.Tensor:
        """Average over the data-parallel ranks: the loss of the global batch when every
        rank's batch has the same number of tokens. (SUM then divide: gloo has no AVG.)"""
        if self.mesh is None or self.dp_size == 1:
            return value
        return self.sum(value) / self.dp_size

    def barrier(self) -> None:
        if self.distributed:
            dist.barrier()

    def shutdown(self) -> None:
        if self.distributed and dist.is_initialized():
            dist.destroy_process_group()


def as_parallel_world(world, parallelism) -> World:
    """A bltx.parallel World for `world`, which may be any object with rank, world_size,
    local_rank and device (e.g. the trainer's own World): the mesh is built from
    `parallelism`. With tp > 1 a foreign world is refused: its data sharding and loss
    averaging would treat the TP ranks as data-parallel ones and train on the wrong batch."""
    if isinstance(world, World):
        return world
    degrees = resolve_degrees(parallelism, world.world_size)
    if degrees.tp > 1:
        raise ConfigError(
            "parallelism.tp > 1 needs bltx.parallel.World (World.from_env(device, "
            "recipe.parallelism)) so data is sharded by dp_rank/dp_size, not by global rank"
        )
    mesh = None
    if world.world_size > 1:
        init_process_group(world.device)
        mesh = build_mesh(degrees, world.device.type)
    return World(world.rank, world.world_size, world.local_rank, world.device, degrees, mesh)
