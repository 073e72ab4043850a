"""The BLT model: patcher -> byte embedder -> local encoder -> latent -> local decoder.

    model = build("model", {"type": "blt", "max_patches": 64, "encoder": {...}, ...})
    out = model(ids)                             # ModelOutput: logits [B, T, 260], starts [B, T]
    out = model(ids, targets)                    # .nll: summed next-byte NLL (training)
    starts = model.patch(ids)                    # bool [B, T], for patch statistics
    out = model(ids, starts=starts)              # or patch_lengths=[B, P] / entropies=[B, T]

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

from bltx.bytes import PAD_ID
from bltx.model.assembly import ByteLatentConfig, ByteLatentModel
from bltx.model.output import ModelOutput, lm_output
from bltx.model.sessions.blt import CachedBLT
from bltx.patching.base import lengths_to_starts, patch_index
from bltx.registry import register
from bltx.schema import component

# Importing these registers the built-in components the default tables name.
from bltx.model import embedder as _embedder  # noqa: F401
from bltx.model import entropy_model as _entropy_model  # noqa: F401
from bltx.model import latent as _latent  # noqa: F401
from bltx.model import local_decoder as _local_decoder  # noqa: F401
from bltx.model import local_encoder as _local_encoder  # noqa: F401
from bltx.patching import entropy as _entropy_patcher  # noqa: F401

@register("model", "blt")
class BLT(ByteLatentModel):
    """Byte Latent Transformer assembled from registered components (see module doc)."""

    # init order: the shared parts, then the patcher (which otherwise initialises and loads
    # itself when built); the patcher is never trained (as in BLT/HF).
    PARTS = (*ByteLatentModel.PARTS, "patcher")
    SELF_INITIALISED = ("patcher",)
    FROZEN = ("patcher",)

    @dataclass
    class Config(ByteLatentConfig):  # embedder, encoder, latent, decoder, max_patches, attention
        patcher: dict = component("patcher", {"type": "entropy"})
        # Decoder patch rule (see module doc); None -> the patcher's `predicts_next_start`.
        decoder_lookahead: bool | None = None

    def __init__(self, cfg: Config, **context):
        super().__init__(cfg)
        self.patcher = self.build_part("patcher", cfg.patcher)
        self.build_shared_parts()
        self.init_built_parts()
        # The patcher is not trained: freeze whatever parameters it has.
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
        targets: torch.Tensor | None = None,
        *,
        starts: torch.Tensor | None = None,
        patch_lengths: torch.Tensor | None = None,
        entropies: torch.Tensor | None = None,
        doc_ids: torch.Tensor | None = None,
    ) -> ModelOutput:
        """ids [B, T] -> ModelOutput: next-byte logits [B, T, 260], or with `targets` [B, T]
        their summed NLL; `starts` [B, T], the patching used. `starts` ([B, T] or [B, T+1])
        or `patch_lengths` ([B, *], zero-padded) bypass the patcher; `entropies` [B, T] feed it.
        `doc_ids` [B, T]: attention stays inside each document (see module doc)."""
        T = ids.shape[1]
        with torch.no_grad():  # boundaries are discrete: nothing to differentiate
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
        logits, nll = self.forward_patched(ids, starts_ext, slots, targets, doc_ids)
        return ModelOutput(logits=logits, nll=nll, starts=starts_ext[:, :T])

    def forward_patched(self, ids: torch.Tensor, starts_ext: torch.Tensor, slots: torch.Tensor,
                        targets: torch.Tensor | None = None, doc_ids: torch.Tensor | None = None,
                        ) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        """The forward once patching is decided: starts bool [B, T+1] (see `_starts`) and
        `slots` [B, P], whose size P is the patch axis -> (logits, None), or (None, summed
        NLL) with `targets`. The compile unit of `compile.scope = "model"`, everything but the
        patcher (the loss included, so it fuses with the output projection)."""
        patch_ids, dec_patch_ids = patch_index(starts_ext, self.decoder_lookahead)
        if doc_ids is None:
            h = self.byte_embedder(ids)
            h, patches = self.encoder(h, patch_ids, slots.shape[1])
            out = lm_output(self.decoder(h, self.latent(patches), dec_patch_ids), targets)
            return out.logits, out.nll
        patch_doc, dec_patch_ids = _patch_documents(doc_ids, patch_ids, dec_patch_ids, slots.shape[1])
        h = self.byte_embedder(ids, doc_ids=doc_ids)
        h, patches = self.encoder(h, patch_ids, slots.shape[1], doc_ids=doc_ids)
        latent = self.latent(patches, doc_ids=patch_doc)
        out = lm_output(self.decoder(h, latent, dec_patch_ids, doc_ids=doc_ids), targets)
        return out.logits, out.nll

    def document_mask_blocker(self) -> str | None:
        """The first part whose forward takes no `doc_ids` (then data.document_mask cannot
        be kept), or None. Read once, when the data and the model are checked together."""
        for name in self.PARTS:
            if name != "patcher" and "doc_ids" not in inspect.signature(getattr(self, name).forward).parameters:
                return f"model.{name} ({type(getattr(self, name)).__name__})"
        return None

    # -- generation -------------------------------------------------------------------------

    def session_unsupported(self) -> str | None:
        """None when this model generates with caches, else the reason (naming the part)."""
        return CachedBLT.unsupported(self)

    def new_session(self, batch: int, capacity: int, compiled: bool = False) -> CachedBLT:
        """A cached generation session over `batch` rows of up to `capacity` positions
        (bltx/model/sessions/blt.py)."""
        return CachedBLT(self, batch, capacity, compiled)


def _patch_documents(doc_ids: torch.Tensor, patch_ids: torch.Tensor, dec_patch_ids: torch.Tensor,
                     num_patches: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(document of each patch [B, P], -1 for a padding patch; the decoder's patch ids with
    -1 where the patch read lies in another document than the byte)."""
    P = num_patches
    # Every byte of a patch is in one document (a patch opens at each document's start).
    patch_doc = doc_ids.new_full((doc_ids.shape[0], P), -1).scatter(1, patch_ids.clamp(0, P - 1), doc_ids)
    read = patch_doc.gather(1, dec_patch_ids.clamp(0, P - 1))
    return patch_doc, torch.where(read == doc_ids, dec_patch_ids, -1)
