"""Row-sharded embedding lookup over the data-parallel shards (BLT's hash n-gram tables).

At 8B the hash tables hold 3.84B parameters. As an FSDP unit they are all-gathered whole
for every lookup (7.4 GiB per rank of gathered parameters on 64 ranks). But a lookup
touches B x T rows of a table of millions, so here each rank keeps its slice of rows for
good and the *ids* travel instead:

    ids of every dp shard  = all_gather(my ids)                     # B x T ints per shard
    partial rows           = lookup of those ids in my row slice    # zeros where not mine
                             (a bag table sums each position's rows here, before the exchange)
    my embeddings          = reduce_scatter(partial rows, sum)      # B x T x d per rank

Backward is the mirror image (all_gather of the output gradients, scatter-add into my
rows), given by the differentiable functional collectives. Communication per lookup is
O(B x T x d) instead of O(rows x d), and no rank ever holds the full table.

The weight is a DTensor sharded on rows (Shard(0)) over the dp_shard mesh dimension (and
replicated over TP ranks, which see the same ids), so checkpoints reshard through DCP and
the seeded init fills each slice with the rows of the full table. The gradient of a slice
sums the contributions of every shard's loss; it is divided by the shard count so that it
equals the average FSDP produces for every other parameter.
"""

from __future__ import annotations

import torch
import torch.distributed._functional_collectives as funcol
import torch.nn.functional as F
from torch import nn
from torch.distributed.tensor import DTensor, Replicate, Shard

from bltx.errors import ConfigError

# torch 2.13 renamed these (the old names warn); older releases have only the old ones.
_all_gather = getattr(funcol, "all_gather_single", None) or funcol.all_gather_tensor
_reduce_scatter = getattr(funcol, "reduce_scatter_single_autograd", None) or funcol.reduce_scatter_tensor_autograd


class _ScaleGrad(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor, scale: float) -> torch.Tensor:
        ctx.scale = scale
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        return grad * ctx.scale, None


class RowShardedEmbedding(nn.Module):
    """An nn.Embedding (or, with `bag`, an nn.EmbeddingBag in sum mode: ids [N, S] -> the sum
    of each row's S rows, [N, dim]) whose rows are split over `mesh[shard_dim]`; see module doc."""

    def __init__(self, num_embeddings: int, embedding_dim: int, mesh, shard_dim: str, bag: bool = False):
        super().__init__()
        from torch.distributed.tensor._utils import compute_local_shape_and_global_offset

        self.num_embeddings, self.embedding_dim, self.bag = num_embeddings, embedding_dim, bag
        self.mesh, self.shard_dim = mesh, shard_dim
        placements = [Shard(0) if name == shard_dim else Replicate() for name in mesh.mesh_dim_names]
        shape, offset = compute_local_shape_and_global_offset((num_embeddings, embedding_dim), mesh, placements)
        self.row_start, self.local_rows = offset[0], shape[0]
        local = torch.empty(shape, device="meta")
        self.weight = nn.Parameter(DTensor.from_local(
            local, mesh, placements, run_check=False,
            shape=torch.Size((num_embeddings, embedding_dim)), stride=(embedding_dim, 1),
        ))

    def forward(self, rows: torch.Tensor) -> torch.Tensor:
        group = self.mesh[self.shard_dim]
        n = group.size()
        every = _all_gather(rows.contiguous(), 0, group)  # [n * B, T]
        local = self.weight.to_local()
        mine = (every >= self.row_start) & (every < self.row_start + self.local_rows)
        idx = (every - self.row_start).clamp(0, max(self.local_rows - 1, 0))
        if self.bag:  # summed here, so the reduce-scatter carries one row per bag, not S
            partial = F.embedding_bag(idx, local, per_sample_weights=mine.to(local.dtype), mode="sum")
        else:
            partial = F.embedding(idx, local) * mine.unsqueeze(-1).to(local.dtype)
        partial = _ScaleGrad.apply(partial, 1.0 / n)
        return _reduce_scatter(partial, "sum", 0, group)

    def extra_repr(self) -> str:
        return (f"{self.num_embeddings}, {self.embedding_dim}, rows {self.row_start}:"
                f"{self.row_start + self.local_rows} over {self.shard_dim}")


def apply_row_sharding(model: nn.Module, fqns: list[str], mesh, shard_dim: str = "dp_shard") -> None:
    """Replace each nn.Embedding (or sum-mode nn.EmbeddingBag) at `fqns` by a
    RowShardedEmbedding on `mesh` (before FSDP, which must then leave it alone); anything
    else at an fqn is a ConfigError (FSDP would otherwise gather it whole, silently)."""
    for fqn in fqns:
        parent_name, _, child = fqn.rpartition(".")
        parent = model.get_submodule(parent_name) if parent_name else model
        emb = getattr(parent, child, None)
        bag = isinstance(emb, nn.EmbeddingBag)
        table = isinstance(emb, nn.Embedding) or (bag and emb.mode == "sum")
        if not table or emb.padding_idx is not None or emb.max_norm is not None or emb.scale_grad_by_freq:
            raise ConfigError(
                f"parallel plan: row_sharded lists '{fqn}', a {type(emb).__name__} this lookup cannot "
                "shard (supported: nn.Embedding or sum-mode nn.EmbeddingBag without padding_idx, "
                "max_norm or scale_grad_by_freq); drop it from the plan's row_sharded or set "
                "parallelism.row_shard_embeddings = false")
        sharded = RowShardedEmbedding(emb.num_embeddings, emb.embedding_dim, mesh, shard_dim, bag)
        sharded.weight.requires_grad_(emb.weight.requires_grad)
        setattr(parent, child, sharded)
