"""torchtitan's Llama 3 in BLT's latent slot (`latent.type = "torchtitan_llama3"`).

    [job]
    plugins = ["plugins.torchtitan_backbone"]

    [model.latent]
    type = "torchtitan_llama3"
    dim = 256
    n_layers = 4
    n_heads = 8

Needs the `titan` extra (torchtitan==0.2.2, triton). The model is torchtitan's own
`torchtitan.models.llama3.Transformer`, built from its `TransformerModelArgs` with SDPA
attention, with `tok_embeddings` and `output` set to None: its forward then passes the input
through as the hidden states, so BLT's patch embeddings go in where token embeddings would,
and the last layer's states (or the final norm's, `final_norm = true`) come out. The
causal mask is SDPA's `is_causal` path, so it is causal over patches; RoPE comes from
torchtitan's precomputed `freqs_cis`, which must cover the longest patch sequence
(`max_seq_len`, default 4096 patches).

Parallelism: the layers live in `latent.model.layers` (an nn.ModuleDict of torchtitan
`TransformerBlock`s with `attention.wq/wk/wv/wo` and `feed_forward.w1/w2/w3`), which is the
shape bltx's BLT plan recognises as Llama blocks (`bltx/parallel/plans.py`
`is_llama_block`): they become FSDP/AC/compile units and get the same column/row-wise
tensor-parallel plan torchtitan's `apply_tp` gives its blocks (without sequence parallel,
since BLT's latent input arrives replicated from the encoder's cross-attention).
torchtitan's attention reshapes with -1 heads, so it needs no head-count patching under TP.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from bltx.errors import ConfigError
from bltx.registry import register

try:
    from torchtitan.models.llama3 import Transformer, TransformerModelArgs

    TORCHTITAN_ERROR = None
except Exception as exc:  # ImportError, or triton missing underneath
    Transformer = TransformerModelArgs = None
    TORCHTITAN_ERROR = f"{type(exc).__name__}: {exc}"


@register("latent", "torchtitan_llama3")
class TorchtitanLlama3Latent(nn.Module):
    """torchtitan's Llama 3 transformer over patch embeddings (see module doc)."""

    @dataclass
    class Config:
        dim: int = 512
        n_layers: int = 4
        n_heads: int = 8
        n_kv_heads: int | None = None
        # torchtitan's SwiGLU width rule: int(8*dim/3 * ffn_dim_multiplier), rounded up to
        # a multiple of `multiple_of`.
        multiple_of: int = 256
        ffn_dim_multiplier: float | None = None
        norm_eps: float = 1e-5
        rope_theta: float = 500000.0
        max_seq_len: int = 4096
        final_norm: bool = False

        def __post_init__(self):
            for name in ("dim", "n_layers", "n_heads", "max_seq_len", "multiple_of"):
                if getattr(self, name) < 1:
                    raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
            if self.dim % self.n_heads:
                raise ValueError(f"dim ({self.dim}) must be divisible by n_heads ({self.n_heads})")

    def __init__(self, cfg: Config, backend=None, **context):
        super().__init__()
        if Transformer is None:
            raise ConfigError(
                f"latent 'torchtitan_llama3' needs torchtitan: pip install 'bltx[titan]' "
                f"(torchtitan==0.2.2 and triton); import failed with {TORCHTITAN_ERROR}"
            )
        self.cfg = cfg
        self.dim = cfg.dim
        args = TransformerModelArgs(
            dim=cfg.dim,
            n_layers=cfg.n_layers,
            n_heads=cfg.n_heads,
            n_kv_heads=cfg.n_kv_heads,
            vocab_size=1,  # embeddings and head are dropped below
            multiple_of=cfg.multiple_of,
            ffn_dim_multiplier=cfg.ffn_dim_multiplier,
            norm_eps=cfg.norm_eps,
            rope_theta=cfg.rope_theta,
            max_seq_len=cfg.max_seq_len,
            attn_type="sdpa",
            attn_mask_type="causal",
        )
        self.model = Transformer(args)
        # Patch embeddings replace token embeddings; BLT's decoder replaces the head.
        self.model.tok_embeddings = None
        self.model.output = None
        if not cfg.final_norm:
            self.model.norm = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not torch.compiler.is_compiling() and x.shape[1] > self.cfg.max_seq_len:
            raise ConfigError(
                f"latent torchtitan_llama3: {x.shape[1]} patches exceed max_seq_len "
                f"{self.cfg.max_seq_len}; raise model.latent.max_seq_len"
            )
        return self.model(x)

    def init_weights(self) -> None:
        # torchtitan's own init (depth-scaled std per block); it also recomputes freqs_cis
        # on the buffer's device, which makes a meta-device build usable after to_empty.
        # Its in-place copies need no_grad (BLT calls init_weights at build time).
        with torch.no_grad():
            self.model.init_weights()

    def forward_flops(self, seq_len: int, patch_len: float) -> float:
        """Forward FLOPs per patch (bltx/model/flop_math.py conventions), each patch reading
        the sequence's seq_len / patch_len patches."""
        context = max(seq_len / patch_len, 1.0)
        d, L, H = self.cfg.dim, self.cfg.n_layers, self.cfg.n_heads
        attn = self.model.layers["0"].attention
        ffn = self.model.layers["0"].feed_forward
        weights = sum(m.weight.numel() for m in (attn.wq, attn.wk, attn.wv, attn.wo, ffn.w1, ffn.w2, ffn.w3))
        return L * (2.0 * weights + 4.0 * d * context)
