"""Who and where this process is: rank, world size, device. Single process by default.

Under torchrun (RANK/WORLD_SIZE/LOCAL_RANK set) `World.from_env` starts the process group;
everything else in the trainer asks the `World` instead of torch.distributed, so the single
process path needs no process group and the parallel path adds no branches elsewhere.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

from bltx.device import pick_device  # noqa: F401  (re-exported for callers)


@dataclass
class World:
    """This process's place among the ranks (data-parallel by default)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")

    # Data-parallel coordinates: which shard of the data this rank reads. Equal to rank and
    # world size here; with tensor parallelism (bltx.parallel.World) ranks of one TP group
    # share a shard, and that World overrides these.
    @property
    def dp_rank(self) -> int:
        return self.rank

    @property
    def dp_size(self) -> int:
        return self.world_size

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    @classmethod
    def from_env(cls, device: str = "auto") -> "World":
        rank = int(os.environ.get("RANK", 0))
        world_size = int(os.environ.get("WORLD_SIZE", 1))
        local_rank = int(os.environ.get("LOCAL_RANK", 0))
        dev = pick_device(device, local_rank)
        if world_size > 1 and not dist.is_initialized():
            dist.init_process_group("nccl" if dev.type == "cuda" else "gloo")
        if dev.type == "cuda":
            torch.cuda.set_device(dev)
        return cls(rank, world_size, local_rank, dev)

    def mean(self, value: torch.Tensor) -> torch.Tensor:
        """Average a scalar tensor over the data-parallel ranks (identity on one process)."""
        if not self.distributed:
            return value
        # SUM then divide: gloo (CPU) has no AVG reduction.
        return self.sum(value) / self.world_size

    def sum(self, value: torch.Tensor) -> torch.Tensor:
        if not self.distributed:
            return value
        value = value.detach().clone()
        dist.all_reduce(value, op=dist.ReduceOp.SUM)
        return value

    def barrier(self) -> None:
        if self.distributed:
            dist.barrier()
