"""Parallel plan of the BLT model (bltx/model/blt.py), kept beside the model, not in it.

Blocks (FSDP / AC / compile units): the byte transformer layers of the local encoder and
decoder, the latent transformer's layers, and the cross-attention modules. The byte
embedder (hash tables: billions of parameters at scale) is an FSDP unit of its own,
gathered only around its forward. The frozen entropy model in the patcher is not sharded
at all: it is replicated on every rank, since the trainer calls it outside the forward.
Tensor parallel: the latent backbone's Llama-style blocks only. The local layers are
narrow (the byte stream is long but thin), where splitting heads costs more in
collectives than it saves; the latent blocks hold most FLOPs and parameters. The latent
input comes from the encoder's cross-attention, so blocks exchange replicated activations
(no sequence parallel): SP would only save norm activations of the short patch axis.
Float8: every big enough linear except the byte head and the patcher's entropy model.
"""

from __future__ import annotations

from torch import nn

from bltx.parallel.plans import ParallelPlan, is_llama_block, layer_blocks, register_plan


@register_plan("blt")
def blt_plan(model) -> ParallelPlan:
    blocks: list[str] = []
    for part in ("encoder", "latent", "decoder"):
        module = getattr(model, part, None)
        if module is None:
            continue
        layers = layer_blocks(module, prefix=part)
        cross = getattr(module, "cross_attn", None)
        cross = [f"{part}.cross_attn.{name}" for name, _ in cross.named_children()] if cross is not None else []
        # Roughly forward order (FSDP keeps the last block gathered for backward): the
        # encoder cross-attends after its layers, the decoder before them.
        blocks += cross + layers if part == "decoder" else layers + cross
    latent_blocks = [b for b in layer_blocks(model.latent, prefix="latent")
                     if is_llama_block(model.get_submodule(b))]
    # The hash n-gram tables hold most of BLT's parameters at 1B-8B scale; as their own
    # shard group they are gathered only for the embedding lookup, not the whole step.
    units = [name for name in ("byte_embedder",)
             if any(True for _ in getattr(model, name, nn.Module()).parameters())]
    # The frozen entropy model is small (0.1B), has no grads or optimizer state, and is
    # called outside the forward (model.patch for statistics): replicate it whole.
    replicated = ["patcher"] if any(True for _ in model.patcher.parameters()) else []
    return ParallelPlan(
        blocks=blocks,
        tp_blocks=latent_blocks,
        fsdp_units=units,
        replicated=replicated,
        # The hash n-gram tables (3.84B parameters at 8B): rows stay sharded, ids travel.
        row_sharded=["byte_embedder.hash_table"] if getattr(model.byte_embedder, "hash_table", None) is not None else [],
        float8_skip=["decoder.output", "patcher"],
        static_shapes=_static_patch_axis,
    )


def _static_patch_axis(model) -> None:
    # Blocks compiled one by one see the patch axis from the eager root: keep it at
    # max_patches so each block compiles once rather than once per batch's patch count.
    model.static_patch_axis = True
