"""Device mesh from the recipe's `[parallelism]` degrees.

The mesh always has three named dimensions, ("dp_replicate", "dp_shard", "tp"), some of
size 1, plus a flattened "dp" dimension (dp_replicate x dp_shard) used for data sharding
and loss averaging. Keeping every dimension (even of size 1) means the rest of the code
never branches on which degrees a recipe set.
"""

from __future__ import annotations

from dataclasses import dataclass

from bltx.errors import ConfigError

MESH_DIMS = ("dp_replicate", "dp_shard", "tp")


@dataclass(frozen=True)
class Degrees:
    """Resolved parallel degrees (no -1 left); their product is the world size."""

    dp_replicate: int = 1
    dp_shard: int = 1
    tp: int = 1

    @property
    def dp(self) -> int:
        """Data-parallel degree: how many different batches one step sees."""
        return self.dp_replicate * self.dp_shard

    @property
    def world_size(self) -> int:
        return self.dp * self.tp

    @property
    def fsdp(self) -> bool:
        # Any data parallelism goes through fully_shard (dp_shard = 1 with replicas is
        # HSDP with shards of one, i.e. DDP-like), so gradients are always averaged there.
        return self.dp > 1

    def shape(self) -> tuple[int, int, int]:
        return (self.dp_replicate, self.dp_shard, self.tp)

    def describe(self) -> str:
        return f"dp_replicate={self.dp_replicate} dp_shard={self.dp_shard} tp={self.tp}"


def resolve_degrees(parallelism, world_size: int) -> Degrees:
    """ParallelismConfig + world size -> Degrees, or a one-line ConfigError saying what
    does not fit. One of dp_replicate / dp_shard may be -1: whatever the world size leaves."""
    values = {"dp_replicate": parallelism.dp_replicate, "dp_shard": parallelism.dp_shard,
              "tp": parallelism.tp}
    inferred = [name for name, v in values.items() if v == -1]
    if "tp" in inferred:
        raise ConfigError("parallelism.tp = -1: tp cannot be inferred; set it (1 for no tensor parallel)")
    if len(inferred) > 1:
        raise ConfigError("parallelism: only one of dp_replicate / dp_shard can be -1 (inferred)")
    for name, value in values.items():
        if value < 1 and value != -1:
            raise ConfigError(f"parallelism.{name} = {value}: must be >= 1, or -1 to infer it")
    if inferred:
        known = [(n, v) for n, v in values.items() if v != -1]
        rest = known[0][1] * known[1][1]
        if world_size % rest:
            shown = " x ".join(f"{n} ({v})" for n, v in known)
            raise ConfigError(
                f"parallelism: {shown} = {rest} does not divide the world size {world_size}, "
                f"so {inferred[0]} = -1 cannot be inferred; launch a multiple of {rest} "
                f"processes or change the degrees"
            )
        values[inferred[0]] = world_size // rest
    rep, shard, tp = values["dp_replicate"], values["dp_shard"], values["tp"]
    product = rep * shard * tp
    if product != world_size:
        raise ConfigError(
            f"parallelism: dp_replicate ({rep}) x dp_shard ({shard}) x tp ({tp}) = {product}, "
            f"but the world size is {world_size}; make the product equal the number of "
            f"processes (or set dp_shard = -1 to infer it)"
        )
    return Degrees(rep, shard, tp)


def build_mesh(degrees: Degrees, device_type: str):
    """A DeviceMesh with dims MESH_DIMS and a flattened "dp" dim. Needs a process group."""
    from torch.distributed.device_mesh import init_device_mesh

    mesh = init_device_mesh(device_type, degrees.shape(), mesh_dim_names=MESH_DIMS)
    mesh["dp_replicate", "dp_shard"]._flatten("dp")
    return mesh


def fsdp_mesh(mesh, degrees: Degrees):
    """The mesh fully_shard works on: 2-D (replicate, shard) for HSDP, else 1-D shard."""
    if degrees.dp_replicate > 1:
        return mesh["dp_replicate", "dp_shard"]
    return mesh["dp_shard"]


def minimum_world_size(recipe) -> int:
    """The fewest ranks the recipe's fixed degrees need (dp_shard = -1 counts as 1)."""
    p = recipe.parallelism
    return max(1, p.dp_replicate) * max(1, p.dp_shard) * max(1, p.tp)
