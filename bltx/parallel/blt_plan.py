"""Parallel plans of the BLT model (bltx/model/blt.py) and of learned chunking
(bltx/model/learned_blt.py, the same parts around a router), kept beside the models.

Blocks (FSDP / AC / compile units): the byte transformer layers of the local encoder and
decoder, the latent transformer's layers, and the cross-attention modules. The byte
embedder (hash tables: billions of parameters at scale) is an FSDP unit of its own,
gathered only around its forward. The frozen entropy model in the patcher is not sharded
at all: it is replicated on every rank, since the trainer calls it outside the forward.
Tensor parallel: the latent backbone's Llama-style blocks only. The local layers are
narrow (the byte stream is long but thin), where splitting heads costs more in
collectives than it saves; the latent blocks hold most FLOPs and parameters. By default
the latent blocks exchange replicated activations; with `parallelism.sequence_parallel`
the residual stream between latent blocks is sharded on the patch axis (norms run on the
shard, one reduce-scatter + all-gather per sub-layer instead of an all-reduce):
`_latent_sequence_root` shards the latent's input and gathers its output, so the encoder
and decoder around it see plain replicated tensors.
Float8: every big enough linear except the byte head and the patcher's entropy model.
"""

from __future__ import annotations

import dataclasses

from bltx.parallel.plans import ParallelPlan, is_llama_block, layer_blocks, register_plan


@register_plan("blt")
def blt_plan(model) -> ParallelPlan:
    # The frozen entropy model is small (0.1B), has no grads or optimizer state, and is
    # called outside the forward (model.patch for statistics): replicate it whole.
    replicated = ["patcher"] if any(True for _ in model.patcher.parameters()) else []
    return dataclasses.replace(_byte_latent_plan(model), replicated=replicated,
                               float8_skip=["decoder.output", "patcher"], compiled_root="forward_patched")


@register_plan("learned_blt")
def learned_blt_plan(model) -> ParallelPlan:
    """Learned chunking (bltx/model/learned_blt.py): the same blocks, tables and latent TP as
    BLT; no patcher. The router's small matrices decide p >= 0.5 and stay in high precision;
    the ratio loss reads the boundary rate of the whole batch (`_batch_boundary_rate`); the
    whole-forward compile keeps the chunk axis at max_patches (chunks are decided inside the
    forward), and so do the eager roots around per-block graphs."""
    return dataclasses.replace(_byte_latent_plan(model), float8_skip=["decoder.output", "chunker"],
                               static_shapes=_static_chunk_axis, dp_root=_batch_boundary_rate)


@register_plan("byteified")
def byteified_plan(model) -> ParallelPlan:
    """A byteified subword LM (bltx/interop/byteify/model.py): BLT's blocks and latent TP
    (the latent is the source's Llama blocks, and the teacher pass runs them again under
    no_grad in the same forward). The source's frozen embedding table and LM head stay in
    the root unit: small next to the blocks at these sizes, no optimizer state. The heads,
    the boundary predictor and the frozen source head keep high precision (they decide
    boundaries and carry the first-byte prior)."""
    return dataclasses.replace(_byte_latent_plan(model), compiled_root="forward_patched",
                               float8_skip=["decoder.output", "heads", "predictor", "source_head"])


def _byte_latent_plan(model) -> ParallelPlan:
    blocks: list[str] = []
    for part in ("encoder", "latent", "decoder"):
        module = model.get_submodule(part)
        layers = layer_blocks(module, prefix=part)
        # Cross-attention modules are blocks too, where the part has them (a pooling-only
        # encoder has none).
        cross = dict(module.named_children()).get("cross_attn")
        cross = [f"{part}.cross_attn.{name}" for name, _ in cross.named_children()] if cross is not None else []
        # Roughly forward order (FSDP keeps the last block gathered for backward): the
        # encoder cross-attends after its layers, the decoder before them.
        blocks += cross + layers if part == "decoder" else layers + cross
    latent_blocks = [b for b in layer_blocks(model.latent, prefix="latent")
                     if is_llama_block(model.get_submodule(b))]
    # The hash n-gram tables hold most of BLT's parameters at 1B-8B scale; as their own
    # shard group they are gathered only for the embedding lookup, not the whole step.
    units = ["byte_embedder"] if any(True for _ in model.byte_embedder.parameters()) else []
    return ParallelPlan(
        blocks=blocks,
        tp_blocks=latent_blocks,
        fsdp_units=units,
        # The hash n-gram tables (3.84B parameters at 8B): rows stay sharded, ids travel.
        row_sharded=["byte_embedder.hash_table"] if "hash_table" in dict(model.byte_embedder.named_children()) else [],
        float8_skip=["decoder.output"],
        tp_root=_latent_sequence_root,
    )


def _static_chunk_axis(model) -> None:
    # Blocks compiled one by one see the chunk axis from the eager root: held at
    # max_patches, each block compiles once rather than once per batch's chunk count.
    model.static_patch_axis = True


def _batch_boundary_rate(model, world) -> None:
    """The ratio loss is linear in the mean boundary probability G once the boundary rate F
    is fixed, so the mean of the ranks' losses is the whole batch's only if every rank uses
    the batch's F: average F over the data-parallel ranks (a traceable collective)."""
    from torch.distributed import _functional_collectives as funcol

    group, size = world.mesh["dp"], world.dp_size
    model.chunker.batch_mean = lambda x: funcol.all_reduce(x, "sum", group) / size


def _latent_sequence_root(model, tp_mesh, float8_tensorwise: bool) -> None:
    """Sequence-parallel boundaries of the latent (used only when the plan runs SP).

    The latent computes its rope and causal mask from the length of its input, so the
    input stays whole there: it is padded at the end to a multiple of the TP degree (later
    positions never reach earlier ones in a causal stack), the first block's input is cut
    to this rank's equal slice of the patch axis (the residual stream between blocks is
    the local slice, as in torchtitan), the last block's output is gathered, and the
    padding is dropped on the way out."""
    import torch.nn.functional as F
    from torch.distributed.tensor import DTensor, Replicate, Shard

    latent = model.latent
    layers = list(latent.layers.values())
    tp = tp_mesh.size()
    state = {}

    def pad(module, args):
        x = args[0]
        state["P"] = x.shape[1]
        extra = -x.shape[1] % tp
        return (F.pad(x, (0, 0, 0, extra)) if extra else x, *args[1:])

    def unpad(module, args, out):
        return out[:, : state["P"]]

    def shard_input(module, args):
        x = DTensor.from_local(args[0], tp_mesh, (Replicate(),), run_check=False)
        return (x.redistribute(tp_mesh, (Shard(1),)).to_local(), *args[1:])

    def gather_output(module, args, out):
        return DTensor.from_local(out, tp_mesh, (Shard(1),), run_check=False).redistribute(
            tp_mesh, (Replicate(),)).to_local()

    latent.register_forward_pre_hook(pad)
    latent.register_forward_hook(unpad)
    layers[0].register_forward_pre_hook(shard_input)
    layers[-1].register_forward_hook(gather_output)

