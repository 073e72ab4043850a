"""The source model's parts a byteified model keeps beside its blocks, frozen: the token
embedding table (the subword embedding added to each patch, and the teacher's input) and the
LM head with the map from tokens to their first bytes (the next token's first-byte
distribution, a prior for the byte after a patch).

Both are read from the source folder's safetensors at `init_weights`, like the latent's
blocks (bltx/interop/llama.py): the weight init of a byteified model *is* the load.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from bltx.bytes import VOCAB_SIZE
from bltx.errors import CheckpointError
from bltx.interop.llama import copy_full, read_llama_config, read_llama_state

# Below this a token's first-byte probability counts as zero (log of it stays finite).
TINY = 1e-30


def source_tables(folder: str | Path) -> dict[str, torch.Tensor]:
    """{'embedding': [V, D], 'head': [V, D]} of a Llama-family save_pretrained folder."""
    hf = read_llama_config(folder)
    state = read_llama_state(folder)
    prefix = "model." if "model.embed_tokens.weight" in state else ""
    embedding = state.get(f"{prefix}embed_tokens.weight")
    if embedding is None:
        raise CheckpointError(f"{folder}: no {prefix}embed_tokens.weight in its safetensors")
    head = state.get("lm_head.weight")
    if head is None:
        if not hf.get("tie_word_embeddings", False):
            raise CheckpointError(f"{folder}: no lm_head.weight and tie_word_embeddings is false")
        head = embedding
    return {"embedding": embedding, "head": head}


class SourceEmbedding(nn.Module):
    """The source's token embedding table, frozen; token -1 reads zeros."""

    def __init__(self, folder: str, vocab_size: int, dim: int):
        super().__init__()
        self.folder = folder
        self.weight = nn.Parameter(torch.zeros(vocab_size, dim), requires_grad=False)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        rows = self.weight[tokens.clamp(min=0)]
        return torch.where((tokens >= 0)[..., None], rows, torch.zeros_like(rows))

    @torch.no_grad()
    def init_weights(self) -> None:
        copy_full(self.weight, source_tables(self.folder)["embedding"])

    def forward_flops(self, seq_len: int, patch_len: float) -> float:
        return 0.0  # a lookup


class SourceHead(nn.Module):
    """The source's LM head, frozen, and what a byte model reads of it: the next token's
    distribution over its first bytes (`first_byte_probs`: over the 260 ids, the EOS token
    counted as EOS_ID, tokens of no bytes dropped and the rest renormalised)."""

    def __init__(self, folder: str, vocab_size: int, dim: int, first_ids: torch.Tensor):
        super().__init__()
        self.folder = folder
        self.dim = dim
        self.weight = nn.Parameter(torch.zeros(vocab_size, dim), requires_grad=False)
        # A host table (not a buffer: a meta-device build would leave a buffer without
        # values, and nothing loads a non-persistent one), moved once per device.
        self._first_ids = {first_ids.device: first_ids}

    def first_ids(self, device: torch.device) -> torch.Tensor:
        if device not in self._first_ids:
            self._first_ids[device] = next(iter(self._first_ids.values())).to(device)
        return self._first_ids[device]

    def token_probs(self, z: torch.Tensor) -> torch.Tensor:
        """z [..., D] (the source's final-normed hidden state) -> next-token probabilities [..., V]."""
        return torch.softmax((z @ self.weight.t()).float(), dim=-1)

    def first_byte_probs(self, probs: torch.Tensor) -> torch.Tensor:
        """Token probabilities [..., V] -> first-byte probabilities [..., 260] (sum to 1)."""
        first_ids = self.first_ids(probs.device)
        ok = first_ids >= 0
        out = probs.new_zeros(*probs.shape[:-1], VOCAB_SIZE)
        out.scatter_add_(-1, first_ids.clamp(min=0).expand_as(probs), probs * ok)
        return out / out.sum(-1, keepdim=True).clamp_min(TINY)

    @torch.no_grad()
    def init_weights(self) -> None:
        copy_full(self.weight, source_tables(self.folder)["head"])

    def forward_flops(self, seq_len: int, patch_len: float) -> float:
        """Per byte: one head matmul per patch (the prior), spread over the patch's bytes."""
        return 2.0 * self.weight.shape[0] * self.dim / patch_len
