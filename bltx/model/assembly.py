"""What every byte-latent assembly shares (BLT with a patcher, learned chunking): the config
fields of the parts around the latent and their checks (`ByteLatentConfig`), and the model
base that builds, checks, initialises, counts and FLOP-counts those parts (`ByteLatentModel`).

    @register("model", "my_blt")
    class MyBLT(ByteLatentModel):
        PARTS = (*ByteLatentModel.PARTS, "chunker")
        @dataclass
        class Config(ByteLatentConfig):  # adds the model's own parts (patcher, chunker, ...)
            chunker: dict = component("chunker", {"type": "cosine"})
        def __init__(self, cfg, **context):
            super().__init__(cfg)
            latent_dim, local_dim = self.build_shared_parts()
            self.chunker = self.build_part("chunker", cfg.chunker, dim=local_dim, latent_dim=latent_dim)
            self.init_built_parts()

One definition, so a new shared field, check or part reaches every assembly at once.
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from bltx.checks import at_least
from bltx.errors import ConfigError
from bltx.model.attention import attention_backend, check_backend_name
from bltx.protocols import FlopTerm, check
from bltx.registry import build
from bltx.schema import component


@dataclass
class ByteLatentConfig:
    byte_embedder: dict = component("byte_embedder", {"type": "hash_ngram"})
    encoder: dict = component("encoder", {"type": "local"})
    latent: dict = component("latent", {"type": "transformer"})
    decoder: dict = component("decoder", {"type": "local"})
    # Static patch (chunk) count P of the padded patch axis; None -> the sequence length.
    max_patches: int | None = None
    # Attention backend for encoder, latent and decoder: "sdpa" or "flex" (CUDA).
    attention: str = "sdpa"

    def __post_init__(self):
        if self.max_patches is not None:
            at_least("max_patches", self.max_patches, 1, " (or unset: the sequence length)")
        check_backend_name(self.attention)


class ByteLatentModel(nn.Module):
    """The parts every byte-latent model shares, built and checked once: latent, encoder
    (filling `ENCODER_SLOT`'s contract), byte embedder and decoder, each against its written
    contract (bltx/protocols.py) with FLOP counting, their widths wired from one another.
    It owns `init_weights`, `flop_terms` and parameter counts over `PARTS`; a subclass adds
    its own parts (BLT a patcher, learned chunking a chunker) with `build_part` and lists them.

    PARTS: every part, in the order init_weights visits them. SELF_INITIALISED: parts that
    initialise (or load) themselves when built, skipped by the build's own init. FROZEN: parts
    that are never trained (the FLOP counter counts them forward only).
    """

    PARTS: tuple[str, ...] = ("byte_embedder", "encoder", "latent", "decoder")
    SELF_INITIALISED: tuple[str, ...] = ()
    FROZEN: tuple[str, ...] = ()
    ENCODER_SLOT = "encoder"

    def __init__(self, cfg: ByteLatentConfig):
        super().__init__()
        self.cfg = cfg
        self.max_patches = cfg.max_patches
        self.backend = attention_backend(cfg.attention, where="model.attention")

    def build_shared_parts(self) -> tuple[int, int]:
        """Build latent, encoder, byte embedder and decoder; -> (latent_dim, local_dim)."""
        cfg = self.cfg
        self.latent = self.build_part("latent", cfg.latent, backend=self.backend)
        latent_dim = _int_dim(self.latent, "model.latent")
        self.encoder = self.build_part("encoder", cfg.encoder, contract=self.ENCODER_SLOT,
                                       latent_dim=latent_dim, backend=self.backend)
        local_dim = _int_dim(self.encoder, "model.encoder")
        self.byte_embedder = self.build_part("byte_embedder", cfg.byte_embedder, dim=local_dim)
        self.decoder = self.build_part("decoder", cfg.decoder, latent_dim=latent_dim, local_dim=local_dim,
                                       backend=self.backend)
        decoder_dim = _int_dim(self.decoder, "model.decoder")
        if decoder_dim != local_dim:  # one check for every decoder, on the widths as built
            raise ConfigError(f"model.decoder.dim ({decoder_dim}) must equal model.encoder.dim ({local_dim}): "
                              f"the decoder reads the encoder's byte states")
        return latent_dim, local_dim

    @staticmethod
    def build_part(kind: str, table: dict, contract: str | None = None, **context) -> nn.Module:
        """The registered `kind` component `table` names, checked against the `contract` slot
        (default: `kind`'s) and for FLOP counting: one line names what a plugin part lacks."""
        where = f"model.{kind}"
        return check(build(kind, table, where=where, **context), contract or kind, where, ("flops",))

    def init_built_parts(self) -> None:
        """After building on a real device: initialise every part that did not initialise
        itself (a meta-device build calls init_weights once materialised instead)."""
        if not any(p.is_meta for p in self.parameters()):
            for name in self.PARTS:
                if name not in self.SELF_INITIALISED:
                    getattr(self, name).init_weights()

    def init_weights(self) -> None:
        """(Re)initialise every weight in place; use after `to_empty` of a meta-device build."""
        for name in self.PARTS:
            getattr(self, name).init_weights()

    def flop_terms(self, seq_len: int, patch_len: float) -> dict[str, FlopTerm]:
        """Forward FLOPs per byte by part, each reported by the part itself; the latent's
        per-patch FLOPs are spread over the patch's bytes (`patch_len`: bytes per patch or
        chunk, the realised mean where boundaries are learned)."""
        return {name: FlopTerm(self.get_submodule(name).forward_flops(seq_len, patch_len)
                               / (patch_len if name == "latent" else 1), trained=name not in self.FROZEN)
                for name in self.PARTS}

    def num_params(self, by_component: bool = True, trainable_only: bool = False) -> dict[str, int] | int:
        """Parameter counts per part (plus 'total'), or the total alone."""
        counts = {name: parameter_count(getattr(self, name), trainable_only) for name in self.PARTS}
        counts["total"] = sum(counts.values())
        return counts if by_component else counts["total"]


def parameter_count(module: nn.Module, trainable_only: bool = False) -> int:
    return sum(p.numel() for p in module.parameters() if p.requires_grad or not trainable_only)


def _int_dim(module: nn.Module, where: str) -> int:
    dim = module.dim  # present: build_part checked the slot's contract
    if not isinstance(dim, int):
        raise ConfigError(f"{where}: component {type(module).__name__} must expose an integer `dim`")
    return dim
