"""The BLT model: patcher -> byte embedder -> local encoder -> latent -> local decoder.

    model = build("model", {"type": "blt", "max_patches": 64, "encoder": {...}, ...})
    logits = model(ids)                          # [B, T, 260], patcher in the loop
    starts = model.patch(ids)                    # bool [B, T], for patch statistics
    logits = model(ids, starts=starts)           # or patch_lengths=[B, P] / entropies=[B, T]

The patch axis is sized to the batch's real patch count, passed to `forward_patched` (the
compile unit) as a dynamic size, so compiled and eager do no work on padding patches. A
caller who compiles the whole forward, patcher included, gets the static `max_patches`
(default T) instead. Padding patches have zero queries and are never read by real bytes.

Which latent state a byte reads (decoder cross-attention), for byte t:
  - lookahead (HF/BLT convention; patchers whose starts[t] depends on ids[:t] only, e.g.
    entropy, static, byte): patch_id(t+1) - 1, so the last byte of a patch reads that
    (complete) patch. For the last position this needs starts at position T, which the
    model gets by running the patcher on ids + one PAD byte; `starts` given with T+1
    columns supply it, with T columns it is taken as False.
  - otherwise: patch_id(t) - 1, the last patch that ended before t's patch began.

Document masks (`doc_ids` [B, T], data.document_mask: several examples packed in a window):
a patch starts at every document's first byte, so no patch spans two documents; each
patch's document is its bytes'; byte self-attention, the latent's attention and the hash
n-grams stay inside a document (the parts take `doc_ids`), the encoder's cross-attention is
patch-local already, and a byte whose decoder patch lies in an earlier document reads none.
The patcher still sees the whole window (an entropy model's boundaries inside a document
may depend on the one before; its representations never reach the next).
"""

from __future__ import annotations

from dataclasses import dataclass

import inspect

import torch
import torch.nn.functional as F
from torch import nn

from bltx.bytes import PAD_ID
from bltx.errors import ConfigError
from bltx.model.assembly import ByteLatentConfig, count_params, part_flop_terms
from bltx.model.attention import attention_backend
from bltx.patching.base import lengths_to_starts, starts_to_patch_ids
from bltx.protocols import FlopTerm, check
from bltx.registry import build, register
from bltx.schema import component

# Importing these registers the built-in components the default tables name.
from bltx.model import embedder as _embedder  # noqa: F401
from bltx.model import entropy_model as _entropy_model  # noqa: F401
from bltx.model import latent as _latent  # noqa: F401
from bltx.model import local_decoder as _local_decoder  # noqa: F401
from bltx.model import local_encoder as _local_encoder  # noqa: F401
from bltx.patching import entropy as _entropy_patcher  # noqa: F401

COMPONENTS = ("patcher", "byte_embedder", "encoder", "latent", "decoder")


@register("model", "blt")
class BLT(nn.Module):
    """Byte Latent Transformer assembled from registered components (see module doc)."""

    @dataclass
    class Config(ByteLatentConfig):  # embedder, encoder, latent, decoder, max_patches, attention
        patcher: dict = component("patcher", {"type": "entropy"})
        # Decoder patch rule (see module doc); None -> the patcher's `predicts_next_start`.
        decoder_lookahead: bool | None = None

    def __init__(self, cfg: Config, **context):
        super().__init__()
        self.cfg = cfg
        self.max_patches = cfg.max_patches
        self.backend = attention_backend(cfg.attention, where="model.attention")
        # Each part is checked against its written contract (bltx/protocols.py) as it is built,
        # FLOP counting included: one line names what a plugin component lacks.
        self.patcher = check(build("patcher", cfg.patcher, where="model.patcher"), "patcher", "model.patcher", ("flops",))
        self.latent = _built("latent", cfg.latent, backend=self.backend)
        latent_dim = _required_dim(self.latent, "model.latent")
        self.encoder = _built("encoder", cfg.encoder, latent_dim=latent_dim, backend=self.backend)
        local_dim = _required_dim(self.encoder, "model.encoder")
        self.byte_embedder = _built("byte_embedder", cfg.byte_embedder, dim=local_dim)
        self.decoder = _built("decoder", cfg.decoder, latent_dim=latent_dim, local_dim=local_dim, backend=self.backend)
        if not any(p.is_meta for p in self.parameters()):
            # Patchers initialise (and load) themselves; a meta build calls init_weights later.
            for name in COMPONENTS[1:]:
                getattr(self, name).init_weights()
        # The patcher is not trained (as in BLT/HF): freeze whatever parameters it has.
        self.patcher.requires_grad_(False)
        self.patcher.eval()
        lookahead = cfg.decoder_lookahead
        self.decoder_lookahead = bool(self.patcher.predicts_next_start) if lookahead is None else lookahead

    # -- patching ---------------------------------------------------------------------------

    def patch(self, ids: torch.Tensor, entropies: torch.Tensor | None = None, include_next: bool = False) -> torch.Tensor:
        """Patch starts bool [B, T] for `ids` ([B, T+1] with include_next: the extra column
        says whether the byte after the last one would open a patch; see module doc)."""
        if not include_next:
            return self.patcher(ids, entropies=entropies)
        ids_ext = F.pad(ids, (0, 1), value=PAD_ID)
        ent_ext = None if entropies is None else F.pad(entropies, (0, 1))
        return self.patcher(ids_ext, entropies=ent_ext)

    def train(self, mode: bool = True):
        super().train(mode)
        self.patcher.eval()
        return self

    def _starts(self, ids, starts, patch_lengths, entropies) -> torch.Tensor:
        """Resolve the patching to bool starts [B, T+1] (last column: next byte opens a patch)."""
        T = ids.shape[1]
        if starts is None and patch_lengths is not None:
            starts = lengths_to_starts(patch_lengths.to(ids.device), T)
        if starts is None:
            return self.patch(ids, entropies=entropies, include_next=True)
        starts = starts.to(device=ids.device, dtype=torch.bool)
        if starts.shape[1] == T:
            starts = F.pad(starts, (0, 1), value=False)
        return starts

    # -- forward ----------------------------------------------------------------------------

    def forward(
        self,
        ids: torch.Tensor,
        starts: torch.Tensor | None = None,
        patch_lengths: torch.Tensor | None = None,
        entropies: torch.Tensor | None = None,
        doc_ids: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """ids [B, T] -> next-byte logits [B, T, 260]. `starts` ([B, T] or [B, T+1]) or
        `patch_lengths` ([B, *], zero-padded) bypass the patcher; `entropies` [B, T] feed it.
        `doc_ids` [B, T]: attention stays inside each document (see module doc)."""
        T = ids.shape[1]
        starts_ext = self._starts(ids, starts, patch_lengths, entropies)
        if doc_ids is not None:  # a document's first byte opens a patch
            opens = F.pad(doc_ids[:, 1:] != doc_ids[:, :-1], (1, 1), value=False)
            starts_ext = starts_ext | opens
        if torch.compiler.is_compiling():
            # The caller compiled the whole forward, patcher included: a traced graph cannot
            # be sized by data, so the patch axis is the static max_patches (padding patches
            # are never read by real bytes).
            slots = ids.new_zeros(ids.shape[0], self.max_patches or T, dtype=torch.bool)
        else:
            # Size the patch axis to the batch's real patch count (one host read): nothing
            # is spent on padding patches, and a window with more than max_patches patches
            # is computed exactly (max_patches bounds whole-forward graphs only).
            num_patches = max(int(starts_ext[:, :T].sum(dim=-1).max()), 1)
            slots = ids.new_zeros(ids.shape[0], num_patches, dtype=torch.bool)
            # The compiled region (`forward_patched`, the plan's compiled_root) reads the
            # patch count as this size, marked dynamic: one graph serves every count, with
            # no recompile as batches change (an int argument would compile twice).
            torch._dynamo.maybe_mark_dynamic(slots, 1)
        return self.forward_patched(ids, starts_ext, slots, doc_ids)

    def forward_patched(self, ids: torch.Tensor, starts_ext: torch.Tensor, slots: torch.Tensor,
                        doc_ids: torch.Tensor | None = None) -> torch.Tensor:
        """The forward once patching is decided: starts bool [B, T+1] (see `_starts`) and
        `slots` [B, P], whose size P is the patch axis. The compile unit of `compile.scope =
        "model"`, everything but the patcher."""
        T = ids.shape[1]
        patch_ids = starts_to_patch_ids(starts_ext[:, :T])
        if self.decoder_lookahead:
            dec_patch_ids = starts_ext.long().cumsum(-1)[:, 1:] - 2
        else:
            dec_patch_ids = patch_ids - 1
        if doc_ids is None:
            h = self.byte_embedder(ids)
            h, patches = self.encoder(h, patch_ids, slots.shape[1])
            return self.decoder(h, self.latent(patches), dec_patch_ids)
        patch_doc, dec_patch_ids = _patch_documents(doc_ids, patch_ids, dec_patch_ids, slots.shape[1])
        h = self.byte_embedder(ids, doc_ids=doc_ids)
        h, patches = self.encoder(h, patch_ids, slots.shape[1], doc_ids=doc_ids)
        latent = self.latent(patches, doc_ids=patch_doc)
        return self.decoder(h, latent, dec_patch_ids, doc_ids=doc_ids)

    def document_mask_blocker(self) -> str | None:
        """The first part whose forward takes no `doc_ids` (then data.document_mask cannot
        be kept), or None."""
        for name in COMPONENTS[1:]:
            if "doc_ids" not in inspect.signature(getattr(self, name).forward).parameters:
                return f"model.{name} ({type(getattr(self, name)).__name__})"
        return None

    # -- weights ----------------------------------------------------------------------------

    def init_weights(self) -> None:
        """(Re)initialise every weight in place; use after `to_empty` of a meta-device build."""
        for name in COMPONENTS[1:]:
            getattr(self, name).init_weights()
        self.patcher.init_weights()

    def flop_terms(self, seq_len: int, patch_len: float) -> dict[str, FlopTerm]:
        """Forward FLOPs per byte by component (bltx/model/assembly.py); the patcher (an
        entropy model, or nothing) is frozen."""
        return part_flop_terms(self, COMPONENTS, seq_len, patch_len, frozen=("patcher",))

    def num_params(self, by_component: bool = True, trainable_only: bool = False) -> dict[str, int] | int:
        """Parameter counts per component (plus 'total'), or the total alone."""
        return count_params(self, COMPONENTS, by_component, trainable_only)

def _patch_documents(doc_ids: torch.Tensor, patch_ids: torch.Tensor, dec_patch_ids: torch.Tensor,
                     num_patches: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(document of each patch [B, P], -1 for a padding patch; the decoder's patch ids with
    -1 where the patch read lies in another document than the byte)."""
    P = num_patches
    # Every byte of a patch is in one document (a patch opens at each document's start).
    patch_doc = doc_ids.new_full((doc_ids.shape[0], P), -1).scatter(1, patch_ids.clamp(0, P - 1), doc_ids)
    read = patch_doc.gather(1, dec_patch_ids.clamp(0, P - 1))
    return patch_doc, torch.where(read == doc_ids, dec_patch_ids, -1)


def _built(slot: str, table: dict, **context) -> nn.Module:
    where = f"model.{slot}"
    return check(build(slot, table, where=where, **context), slot, where, ("flops",))


def _required_dim(module: nn.Module, where: str) -> int:
    dim = module.dim  # present: `_built` checked the slot's contract
    if not isinstance(dim, int):
        raise ConfigError(f"{where}: component {type(module).__name__} must expose an integer `dim`")
    return dim
