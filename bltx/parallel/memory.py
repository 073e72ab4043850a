"""Per-rank memory estimate of a parallel plan, for `--dry-run` (model on the meta device).

Counted, per rank:
  params     fp32 master weights, sharded by FSDP (dp_shard) and, inside tensor-parallel
             blocks, by tp; frozen weights kept in training.dtype.
  grads      fp32 gradients of the trainable weights, sharded the same way.
  optimizer  AdamW's two fp32 moments per trainable weight, sharded the same way.
  gathered   FSDP's transient unsharded copies in the compute dtype: the root's params
             plus the two largest shard groups (the one computing and the one
             prefetched).
Not counted: activations (they depend on the patching and on activation checkpointing),
the allocator's fragmentation, communication buffers, CUDA context. Treat the total as a
floor.
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from bltx.parallel.mesh import resolve_degrees
from bltx.precision import resolve_dtype
from bltx.parallel.plans import ParallelPlan, plan_for

GiB = 1024**3


@dataclass
class MemoryEstimate:
    """Bytes per rank, by kind (see module docstring)."""

    params: int
    grads: int
    optimizer: int
    gathered: int

    @property
    def total(self) -> int:
        return self.params + self.grads + self.optimizer + self.gathered

    def lines(self) -> list[str]:
        rows = [("params", self.params), ("grads", self.grads), ("optimizer", self.optimizer),
                ("fsdp gathered", self.gathered), ("total (no activations)", self.total)]
        return [f"{name:<24}{value / GiB:>10.2f} GiB" for name, value in rows]


def _tp_param_ids(model: nn.Module, plan: ParallelPlan) -> set[int]:
    """Parameters that tensor parallelism splits: the attention and FFN linears."""
    out = set()
    for fqn in plan.tp_blocks:
        block = model.get_submodule(fqn)
        for sub in (block.attention, block.feed_forward):
            for name, child in sub.named_children():
                if isinstance(child, nn.Linear):
                    out.update(id(p) for p in child.parameters())
    return out


def estimate_memory(model: nn.Module, recipe, world_size: int, plan: ParallelPlan | None = None) -> MemoryEstimate:
    plan = plan or plan_for(model)
    deg = resolve_degrees(recipe.parallelism, world_size)
    # "auto" is resolved for the device this plan is for: a GPU when one is visible, else
    # this machine's CPU (a --dry-run on a laptop for a GPU recipe says "auto" -> float32:
    # an over-estimate of the gathered copies, never an under-estimate).
    compute_bytes = 2 if resolve_dtype(recipe.training.dtype)[0] == "bfloat16" else 4
    tp_ids = _tp_param_ids(model, plan) if deg.tp > 1 else set()
    whole = {id(p) for fqn in plan.replicated for p in model.get_submodule(fqn).parameters()}

    def per_rank(p) -> float:
        n = p.numel() / (1 if id(p) in whole else deg.dp_shard)
        return n / deg.tp if id(p) in tp_ids else n

    params = grads = 0.0
    for p in model.parameters():
        if p.requires_grad:
            params += 4 * per_rank(p)
            grads += 4 * per_rank(p)
        else:
            params += compute_bytes * per_rank(p)
    optimizer = 2 * grads

    gathered = 0.0
    if deg.fsdp:
        block_ids: set[int] = set()
        sizes = []
        # Row-sharded tables (bltx/parallel/row_sharded.py) are never gathered.
        row_sharded = set()
        if recipe.parallelism.row_shard_embeddings and deg.dp_shard > 1 and deg.dp_replicate == 1:
            row_sharded = {id(p) for fqn in plan.row_sharded for p in model.get_submodule(fqn).parameters()}
        for fqn in list(plan.fsdp_units) + list(plan.blocks):
            ps = [p for p in model.get_submodule(fqn).parameters() if id(p) not in row_sharded]
            block_ids.update(id(p) for p in ps)
            sizes.append(sum(p.numel() / (deg.tp if id(p) in tp_ids else 1) for p in ps))
        root = sum(p.numel() for p in model.parameters() if id(p) not in block_ids | whole | row_sharded)
        gathered = compute_bytes * (root + sum(sorted(sizes)[-2:]))
    return MemoryEstimate(int(params), int(grads), int(optimizer), int(gathered))


def dry_run_lines(model: nn.Module, recipe, world_size: int) -> list[str]:
    """What `parallelize` would do on `world_size` ranks, and the memory per rank, for a
    model on the meta device (nothing is converted or sharded). For `--dry-run`."""
    from bltx.parallel.apply import check_plan
    from bltx.parallel.float8 import float8_filter

    plan = plan_for(model)
    deg = resolve_degrees(recipe.parallelism, world_size)
    check_plan(model, plan, deg.tp)
    lines = [f"parallel plan for {world_size} ranks: {deg.describe()}"]
    lines.append(f"  blocks (FSDP/AC/compile units): {len(plan.blocks)}"
                 + (f" + {len(plan.fsdp_units)} FSDP units ({', '.join(plan.fsdp_units)})" if plan.fsdp_units else ""))
    if deg.tp > 1:
        lines.append(f"  tensor-parallel blocks: {len(plan.tp_blocks)}")
    if plan.row_sharded and recipe.parallelism.row_shard_embeddings and deg.dp_shard > 1 and deg.dp_replicate == 1:
        lines.append(f"  row-sharded embeddings (ids exchanged, never gathered): {', '.join(plan.row_sharded)}")
    if recipe.float8.enable:
        keep = float8_filter(plan.float8_skip, plan.float8_min_dim)
        n = sum(1 for name, m in model.named_modules()
                if keep(m, name) and any(p.requires_grad for p in m.parameters()))
        lines.append(f"  float8 ({recipe.float8.recipe}) linears: {n}")
    lines.append(f"  activation checkpointing: {recipe.activation_checkpoint.mode}; "
                 f"compile: {recipe.compile.scope if recipe.compile.enable else 'off'}; dtype: {recipe.training.dtype}")
    lines.append("memory per rank:")
    lines += ["  " + line for line in estimate_memory(model, recipe, world_size, plan).lines()]
    return lines
