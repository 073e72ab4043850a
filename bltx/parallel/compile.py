"""torch.compile per block (torchtitan's choice): blocks are identical, so one compiled
graph is reused by every block, compile time stays flat in depth, and FSDP's per-block
hooks stay outside the graphs.

`Module.compile` compiles in place: parameter names do not change (no `_orig_mod.`), so
checkpoints and optimizer state are the same with and without compile.
"""

from __future__ import annotations

from torch import nn


def apply_compile(model: nn.Module, blocks: list[str], fullgraph: bool = True) -> None:
    for fqn in blocks:
        model.get_submodule(fqn).compile(fullgraph=fullgraph)
