"""What every byte-latent assembly shares (BLT with a patcher, learned chunking): the config
fields of the parts around the latent and their checks, and parameter counts by part.

    @dataclass
    class Config(ByteLatentConfig):     # adds the model's own parts (patcher, chunker, ...)
        chunker: dict = component("chunker", {"type": "cosine"})

One definition, so a new shared field (or check) reaches every assembly at once.
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from bltx.model.attention import check_backend_name
from bltx.protocols import FlopTerm
from bltx.registry import validate
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
        if self.max_patches is not None and self.max_patches < 1:
            raise ValueError(f"max_patches must be >= 1, got {self.max_patches}")
        check_backend_name(self.attention)
        enc = validate("encoder", self.encoder, "model.encoder")
        dec = validate("decoder", self.decoder, "model.decoder")
        enc_dim, dec_dim = getattr(enc, "dim", None), getattr(dec, "dim", None)
        if enc_dim is not None and dec_dim is not None and enc_dim != dec_dim:
            raise ValueError(
                f"decoder.dim ({dec_dim}) must equal encoder.dim ({enc_dim}): "
                f"the decoder reads the encoder's byte states"
            )


def count_params(model: nn.Module, parts: tuple[str, ...], by_component: bool = True,
                 trainable_only: bool = False) -> dict[str, int] | int:
    """Parameter counts per part (plus 'total'), or the total alone."""
    def count(m: nn.Module) -> int:
        return sum(p.numel() for p in m.parameters() if p.requires_grad or not trainable_only)

    counts = {name: count(getattr(model, name)) for name in parts}
    counts["total"] = sum(counts.values())
    return counts if by_component else counts["total"]


def part_flop_terms(model: nn.Module, parts: tuple[str, ...], seq_len: int, patch_len: float,
                    frozen: tuple[str, ...] = ()) -> dict[str, FlopTerm]:
    """Forward FLOPs per byte by part, each reported by the part itself; the latent's
    per-patch FLOPs are spread over the patch's bytes, and `frozen` parts (an entropy model)
    are not trained."""
    return {name: FlopTerm(model.get_submodule(name).forward_flops(seq_len, patch_len)
                           / (patch_len if name == "latent" else 1), trained=name not in frozen)
            for name in parts}
