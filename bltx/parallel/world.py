"""This process's place in a run: ranks, device, device mesh. One class for every launch.

    world = World.from_env(recipe.job.device, recipe.parallelism)   # under torchrun or not
    shard = data[world.dp_rank :: world.dp_size]                     # each dp rank its batch
    total = world.dp_sum(n_patches)                                  # over the data shards

A single process is a 1-rank world: no process group, no mesh, every collective is the
identity, so the trainer has no single-process branches. Under torchrun (WORLD_SIZE > 1)
the process group is started here (gloo on CPU, nccl on CUDA) and the mesh is built from
`[parallelism]`. Tensor-parallel ranks of one data shard compute identical activations
and losses, so data sharding and sums of per-shard quantities use the data-parallel
coordinates; `all_sum` (every rank) is for decisions all ranks must share, like stopping.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

import torch
import torch.distributed as dist

from bltx.device import pick_device
from bltx.parallel.mesh import Degrees, build_mesh, fsdp_mesh, resolve_degrees


def init_process_group(device: torch.device) -> None:
    """Start the default process group from torchrun's env (no-op if already started)."""
    if not dist.is_initialized():
        backend = "nccl" if device.type == "cuda" else "gloo"
        kwargs = {"device_id": device} if device.type == "cuda" else {}
        dist.init_process_group(backend, **kwargs)


@dataclass
class World:
    """Ranks, device and device mesh of this process (`mesh` is None on one process)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    degrees: Degrees = field(default_factory=Degrees)
    mesh: object | None = None

    @classmethod
    def from_env(cls, device: str = "auto", parallelism=None) -> "World":
        """Read RANK/WORLD_SIZE/LOCAL_RANK (torchrun), check the degrees against the world
        size (one-line ConfigError), start the process group and build the mesh."""
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
        """How many different batches one step sees."""
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

    # -- collectives ------------------------------------------------------------------------

    def dp_sum(self, value: torch.Tensor) -> torch.Tensor:
        """Sum of a per-shard quantity over the data-parallel shards (TP ranks of a shard
        hold the same value and count once). Identity on one data shard."""
        if self.mesh is None or self.dp_size == 1:
            return value
        value = value.detach().clone()
        dist.all_reduce(value, op=dist.ReduceOp.SUM, group=self.mesh["dp"].get_group())
        return value

    def dp_mean(self, value: torch.Tensor) -> torch.Tensor:
        """Average over the data-parallel shards (SUM then divide: gloo has no AVG)."""
        return self.dp_sum(value) / self.dp_size if self.dp_size > 1 else value

    def all_sum(self, value: torch.Tensor) -> torch.Tensor:
        """Sum over every rank. Used where all ranks must agree (a stop decision), and for
        packing per-shard sums into one collective: divide those parts by `tp_size`."""
        if not self.distributed:
            return value
        value = value.detach().clone()
        dist.all_reduce(value, op=dist.ReduceOp.SUM)
        return value

    def barrier(self) -> None:
        if self.distributed:
            dist.barrier()

    def shutdown(self) -> None:
        if self.distributed and dist.is_initialized():
            dist.destroy_process_group()
