"""torch.compile per block (torchtitan's choice, used under FSDP): blocks are identical,
so one compiled graph is reused by every block, compile time stays flat in depth, and
FSDP's per-block hooks stay outside the graphs.

`Module.compile` compiles in place: parameter names do not change (no `_orig_mod.`), so
checkpoints and optimizer state are the same with and without compile.
"""

from __future__ import annotations

import torch
from torch import nn


def apply_compile(model: nn.Module, blocks: list[str], fullgraph: bool = True) -> None:
    # Dynamo's recompile limit counts graphs per code object. BLT has several kinds of
    # block (local layers, cross-attention, latent layers) and, under activation
    # checkpointing, all of them share the wrapper's forward; each kind needs a graph for
    # training and one for evaluation (no_grad). Allow that many, with room to spare.
    kinds = {type(getattr(model.get_submodule(fqn), "_checkpoint_wrapped_module", model.get_submodule(fqn)))
             for fqn in blocks}
    config = torch._dynamo.config
    config.recompile_limit = max(config.recompile_limit, 4 * len(kinds) + 4)
    for fqn in blocks:
        model.get_submodule(fqn).compile(fullgraph=fullgraph)


def compile_whole(model: nn.Module, root: str | None = None, fullgraph: bool = True) -> str:
    """Compile the model as one graph, in place (the module keeps its class, methods and
    parameter names): its `forward`, or the method `root` names (a plan's compiled_root,
    e.g. BLT's `forward_patched`: the forward after the host-side patching). Returns what
    was compiled, for the build summary."""
    if root is None:
        model.compile(fullgraph=fullgraph)
        return "whole model"
    setattr(model, root, torch.compile(getattr(model, root), fullgraph=fullgraph))
    return f"whole model ({root})"
