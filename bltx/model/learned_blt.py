"""BLT with learned (H-Net style) chunking: boundaries decided by a router on the encoder's
byte states instead of a patcher on the ids, trained end to end with the language model.

    byte_embedder -> encoder.encode_bytes -> chunker (p_t, boundaries) -> encoder.downsample
        -> latent over chunks -> chunker.dechunk (EMA, upsample, STE) -> decoder -> logits

The parts are the registered components a BLT uses (byte embedder, latent: transformer,
recurrent or any plugin; the local decoder), plus an encoder with the two-stage interface
(`byte_layers`, bltx/model/byte_encoder.py) and a `chunker` (bltx/model/chunking.py).

Causality (logits at t read bytes <= t only): encoder states are causal; a boundary at t
reads h_t and h_{t-1}; a chunk is the state at its first byte, so chunk c depends on bytes
<= start(c); the latent is causal over chunks and the EMA runs forward over chunks; byte t
reads the chunk holding t, which started at or before t, both through the residual stream
(`u`) and through the decoder's cross-attention (dec patch ids = own chunk); the decoder's
byte layers are causal. So, unlike BLT's pooled patches, a byte may read its own chunk.

Training extras come back in the forward's ModelOutput (bltx/model/output.py): `aux_losses`
(the weighted ratio loss, added to the loss by the trainer), `stats` (boundary rate F, mean
probability G, scalars) and `starts` (bool [B, T], the chunk starts it realised). So the
engine counts chunks from the forward it ran anyway; `patch(ids)` runs embedder, encoder and
router once more and is for callers without a forward (statistics, pictures).

Generation: `new_session` (bltx/model/sessions/learned.py) steps every part through its cache
protocol.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from bltx.model.assembly import ByteLatentConfig, ByteLatentModel
from bltx.model.chunking import cap_starts, chunk_start_positions
from bltx.model.output import lm_output
from bltx.model.sessions.learned import CachedLearnedBLT
from bltx.patching.base import starts_to_patch_ids
from bltx.registry import register
from bltx.schema import component

# Importing these registers the components the default tables name.
from bltx.model import byte_encoder as _byte_encoder  # noqa: F401
from bltx.model import chunking as _chunking  # noqa: F401
from bltx.model import embedder as _embedder  # noqa: F401
from bltx.model import latent as _latent  # noqa: F401
from bltx.model import local_decoder as _local_decoder  # noqa: F401

@register("model", "learned_blt")
class LearnedChunkBLT(ByteLatentModel):
    """BLT whose patches are learned chunks (see module doc)."""

    PARTS = ("byte_embedder", "encoder", "chunker", "latent", "decoder")
    # The router reads the encoder's byte states between its two stages.
    ENCODER_SLOT = "staged_encoder"

    @dataclass
    class Config(ByteLatentConfig):
        # The parts around the latent, max_patches (here: at most P chunks per sequence,
        # bltx/model/chunking.py, cap_starts) and attention: bltx/model/assembly.py.
        encoder: dict = component("encoder", {"type": "byte_layers"})
        chunker: dict = component("chunker", {"type": "cosine"})

    def __init__(self, cfg: Config, **context):
        super().__init__(cfg)
        latent_dim, local_dim = self.build_shared_parts()
        self.chunker = self.build_part("chunker", cfg.chunker, dim=local_dim, latent_dim=latent_dim)
        # True: keep the chunk axis at max_patches in eager forwards too (set by the parallel
        # plan when blocks compile one by one). BLT sizes its axis dynamically instead; chunks
        # are decided inside this forward, so no eager prologue can size it here.
        self.static_patch_axis = False
        self.init_built_parts()

    @property
    def target_chunk_length(self) -> float:
        """Bytes per chunk the chunker's ratio loss aims at (tools/compare.py plans with it)."""
        return float(self.chunker.target_length)

    # -- chunking ---------------------------------------------------------------------------

    def _byte_states(self, ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.encoder.encode_bytes(self.byte_embedder(ids))
        return h, self.chunker.probabilities(h)

    def _decide(self, p: torch.Tensor, starts: torch.Tensor | None, T: int) -> torch.Tensor:
        b = p >= 0.5 if starts is None else starts[:, :T].to(device=p.device, dtype=torch.bool)
        return cap_starts(b, self.max_patches or T)

    # `patch` and `boundary_probabilities` run through `forward` (router_only): wrappers that
    # gather weights around the forward (FSDP) then gather them for these calls too.

    def patch(self, ids: torch.Tensor, entropies=None, include_next: bool = False) -> torch.Tensor:
        """Chunk starts bool [B, T] (a False column appended with include_next: the model
        needs no lookahead; the engine asks for it)."""
        starts = self(ids, router_only=True)[1]
        return F.pad(starts, (0, 1), value=False) if include_next else starts

    def boundary_probabilities(self, ids: torch.Tensor) -> torch.Tensor:
        """p_t [B, T] (tools/show_patches.py draws it)."""
        return self(ids, router_only=True)[0]

    # -- forward ----------------------------------------------------------------------------

    def forward(self, ids: torch.Tensor, targets: torch.Tensor | None = None, *,
                starts: torch.Tensor | None = None, router_only: bool = False, **ignored):
        """ids [B, T] -> ModelOutput: logits [B, T, 260] (or with `targets`, their summed
        NLL), the chunk starts realised, the ratio loss (`aux_losses`) and boundary
        statistics (`stats`). `starts` ([B, T] or [B, T+1]) overrides the router's decisions
        (e.g. the ones `patch` returned); p is always the router's.
        router_only: stop after the router, -> (p [B, T], starts [B, T])."""
        T = ids.shape[1]
        h, p = self._byte_states(ids)
        b = self._decide(p, starts, T)
        if router_only:
            return p, b
        P = self.max_patches or T
        if not torch.compiler.is_compiling() and not self.static_patch_axis:
            # Eager: the chunk axis sized to the real count (the cap already applied).
            P = int(b.sum(dim=-1).max())
        patch_ids = starts_to_patch_ids(b)
        zhat = self.latent(self.encoder.downsample(h, patch_ids, P))
        z, u = self.chunker.dechunk(zhat, p, b, patch_ids, chunk_start_positions(patch_ids, P))
        aux_losses, stats = self.chunker.aux(p, b)
        return lm_output(self.decoder(h + u, z, patch_ids), targets, starts=b, aux_losses=aux_losses, stats=stats)

    # -- generation -------------------------------------------------------------------------

    def session_unsupported(self) -> str | None:
        """None when this model generates with caches, else the reason (naming the part)."""
        return CachedLearnedBLT.unsupported(self)

    def new_session(self, batch: int, capacity: int, compiled: bool = False) -> CachedLearnedBLT:
        """A cached generation session with online boundaries (bltx/model/sessions/learned.py)."""
        return CachedLearnedBLT(self, batch, capacity, compiled)
