"""Byte-ifying: start the latent backbone from a pretrained Llama-style checkpoint (the BLT
paper's "BLT from Llama 3.1"), dropping its token embeddings and output head. Sources:
Llama-family blocks (`model_type` llama, mistral) and Qwen2 (the same block with biases on
the q/k/v projections); another architecture is refused in one line naming it.

    [model.latent]
    type = "hf_llama"
    path = "checkpoints/Llama-3.1-8B"      # a Hugging Face `save_pretrained` folder
    final_norm = false                     # keep Llama's final RMSNorm as the latent's

The folder's `config.json` sets the latent's sizes (so FLOP accounting and the parallel plan
see a plain Llama transformer), and `init_weights()` loads the transformer layers from its
safetensors files: the trainer's and the meta-device path's weight init *is* the load.
Only `json` and `safetensors` are needed, not `transformers`.

RoPE layout: HF Llama rotates pairs (i, i + head_dim/2) ("rotate_half"), bltx rotates
interleaved pairs (2i, 2i+1) with the same frequency for pair i. Permuting the rows of
wq and wk inside each head (new row 2i <- old row i, new row 2i+1 <- old row i + hd/2)
makes q.k identical, so the converted latent computes the same function (tested against
`LlamaModel` hidden states). Llama 3.1's "llama3" rope scaling rescales low frequencies
for long contexts; bltx's rope has no scaling, so such checkpoints need
`ignore_rope_scaling = true` (harmless at the short patch contexts of BLT training).
Likewise a source whose attention is windowed (Mistral's `sliding_window`, Qwen2 with
`use_sliding_window`) needs `ignore_sliding_window = true`: the latent attends to every
earlier patch, which is the same function while a sequence has no more patches than the
window.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import torch

from bltx.checks import require
from bltx.errors import CheckpointError
from bltx.model.latent import LatentTransformer
from bltx.model.transformer import TransformerDims
from bltx.registry import register

# Source architectures whose decoder layers are Llama blocks (RMSNorm, rotate-half rope,
# GQA attention, SwiGLU MLP): model_type -> whether q/k/v carry biases.
SOURCES = {"llama": False, "mistral": False, "qwen2": True}
# HF Llama parameter (under model.layers.N.) -> bltx latent parameter (under layers.N.)
LAYER_KEYS = {
    "self_attn.q_proj.weight": "attention.wq.weight",
    "self_attn.k_proj.weight": "attention.wk.weight",
    "self_attn.v_proj.weight": "attention.wv.weight",
    "self_attn.o_proj.weight": "attention.wo.weight",
    "mlp.gate_proj.weight": "feed_forward.w1.weight",
    "mlp.up_proj.weight": "feed_forward.w3.weight",
    "mlp.down_proj.weight": "feed_forward.w2.weight",
    "input_layernorm.weight": "attention_norm.weight",
    "post_attention_layernorm.weight": "ffn_norm.weight",
}
QKV_BIAS_KEYS = {
    "self_attn.q_proj.bias": "attention.wq.bias",
    "self_attn.k_proj.bias": "attention.wk.bias",
    "self_attn.v_proj.bias": "attention.wv.bias",
}


def read_llama_config(path: str | Path) -> dict:
    folder = Path(path)
    file = folder / "config.json"
    if not file.is_file():
        raise CheckpointError(f"no config.json in {folder}: expected a Hugging Face save_pretrained folder")
    cfg = json.loads(file.read_text())
    kind = cfg.get("model_type")
    if kind not in SOURCES:
        raise CheckpointError(f"{folder}: model_type '{kind}' is not a supported source; supported: "
                              f"{', '.join(SOURCES)} (Llama-style decoder blocks)")
    return cfg


def windowed_attention(hf: dict) -> int | None:
    """The source's attention window in tokens, or None when it attends to all."""
    if hf.get("model_type") == "qwen2" and not hf.get("use_sliding_window"):
        return None
    return hf.get("sliding_window")


def latent_dims(hf: dict, ignore_rope_scaling: bool = False, ignore_sliding_window: bool = False) -> dict:
    """Keyword sizes of bltx's latent transformer for an HF Llama-family config."""
    dim, heads = hf["hidden_size"], hf["num_attention_heads"]
    if hf.get("head_dim") not in (None, dim // heads):
        raise CheckpointError(f"head_dim {hf['head_dim']} != hidden_size / num_attention_heads; not supported")
    if hf.get("attention_bias") or hf.get("mlp_bias"):
        raise CheckpointError("Llama checkpoints with attention or MLP biases are not supported")
    window = windowed_attention(hf)
    if window is not None and not ignore_sliding_window:
        raise CheckpointError(
            f"the {hf['model_type']} source attends within a window of {window} tokens, which bltx's "
            f"latent lacks; set ignore_sliding_window = true (the same function while a sequence has "
            f"at most {window} patches)"
        )
    scaling = hf.get("rope_scaling") or (hf.get("rope_parameters") or {})
    kind = scaling.get("rope_type", scaling.get("type", "default")) if isinstance(scaling, dict) else "default"
    if kind not in ("default", None) and not ignore_rope_scaling:
        raise CheckpointError(
            f"the checkpoint uses '{kind}' rope scaling, which bltx's rope lacks; set "
            f"ignore_rope_scaling = true to load it with unscaled rope"
        )
    theta = hf.get("rope_theta")
    if theta is None and isinstance(hf.get("rope_parameters"), dict):
        theta = hf["rope_parameters"].get("rope_theta")
    return {
        "dim": dim,
        "n_layers": hf["num_hidden_layers"],
        "n_heads": heads,
        "n_kv_heads": hf.get("num_key_value_heads", heads),
        "ffn_dim": hf["intermediate_size"],
        "norm_eps": hf.get("rms_norm_eps", 1e-5),
        "rope_theta": float(theta if theta is not None else 10000.0),
        "qkv_bias": SOURCES[hf["model_type"]],
    }


def half_to_interleaved(w: torch.Tensor, n_heads: int) -> torch.Tensor:
    """Rows of a q/k projection (weight [out, in] or bias [out]) from rotate_half layout to
    bltx's interleaved layout."""
    out_dim, rest = w.shape[0], w.shape[1:]
    hd = out_dim // n_heads
    return w.view(n_heads, 2, hd // 2, *rest).transpose(1, 2).reshape(out_dim, *rest)


def interleaved_to_half(w: torch.Tensor, n_heads: int) -> torch.Tensor:
    """Inverse of `half_to_interleaved`."""
    out_dim, rest = w.shape[0], w.shape[1:]
    hd = out_dim // n_heads
    return w.view(n_heads, hd // 2, 2, *rest).transpose(1, 2).reshape(out_dim, *rest)


def read_llama_state(path: str | Path) -> dict[str, torch.Tensor]:
    """All tensors of the folder's safetensors files (single or sharded)."""
    from safetensors.torch import load_file

    folder = Path(path)
    files = sorted(folder.glob("*.safetensors"))
    if not files:
        raise CheckpointError(f"no .safetensors files in {folder} (save with safe_serialization)")
    state: dict[str, torch.Tensor] = {}
    for f in files:
        state.update(load_file(str(f)))
    return state


def llama_to_latent_state(state: dict[str, torch.Tensor], hf: dict, final_norm: bool) -> dict[str, torch.Tensor]:
    """HF Llama-family weights -> the state dict of bltx's latent transformer (embeddings and
    head dropped; q/k rows, and their biases, permuted to the interleaved rope layout)."""
    prefix = "model." if any(k.startswith("model.layers.") for k in state) else ""
    heads, kv_heads = hf["num_attention_heads"], hf.get("num_key_value_heads", hf["num_attention_heads"])
    keys = {**LAYER_KEYS, **(QKV_BIAS_KEYS if SOURCES[hf["model_type"]] else {})}
    out = {}
    for i in range(hf["num_hidden_layers"]):
        for src, dst in keys.items():
            key = f"{prefix}layers.{i}.{src}"
            if key not in state:
                raise CheckpointError(f"{hf['model_type']} checkpoint lacks {key}")
            w = state[key]
            if src.startswith("self_attn.q_proj"):
                w = half_to_interleaved(w, heads)
            elif src.startswith("self_attn.k_proj"):
                w = half_to_interleaved(w, kv_heads)
            out[f"layers.{i}.{dst}"] = w
    if final_norm:
        out["norm.weight"] = state[f"{prefix}norm.weight"]
    return out


@register("latent", "hf_llama")
class HfLlamaLatent(LatentTransformer):
    """The latent transformer initialised from an HF Llama checkpoint (see module doc)."""

    @dataclass
    class Config(TransformerDims):
        path: str = ""
        final_norm: bool = False
        ignore_rope_scaling: bool = False
        ignore_sliding_window: bool = False

        def __post_init__(self):
            require(bool(self.path), "path", self.path, "must name a Hugging Face save_pretrained folder")
            # Sizes come from the checkpoint, whatever the table says.
            dims = latent_dims(read_llama_config(self.path), self.ignore_rope_scaling, self.ignore_sliding_window)
            for key, value in dims.items():
                setattr(self, key, value)
            super().__post_init__()

    def __init__(self, cfg: Config, backend, **context):
        super().__init__(cfg, backend)

    def init_weights(self) -> None:
        load_llama_into(self, self.cfg.path, self.cfg.final_norm, self.cfg.ignore_rope_scaling,
                        self.cfg.ignore_sliding_window)


@torch.no_grad()
def load_llama_into(latent: LatentTransformer, path: str | Path, final_norm: bool | None = None,
                    ignore_rope_scaling: bool = False, ignore_sliding_window: bool = False) -> None:
    """Copy an HF Llama-family checkpoint's transformer layers into `latent` (sizes must match)."""
    hf = read_llama_config(path)
    dims = latent_dims(hf, ignore_rope_scaling, ignore_sliding_window)
    mismatched = {k: (v, getattr(latent.cfg, k)) for k, v in dims.items()
                  if k != "n_kv_heads" and getattr(latent.cfg, k) != v}
    if latent.cfg.kv_heads != dims["n_kv_heads"]:
        mismatched["n_kv_heads"] = (dims["n_kv_heads"], latent.cfg.kv_heads)
    if mismatched:
        raise CheckpointError(f"latent sizes differ from {path} (checkpoint, latent): {mismatched}")
    final_norm = latent.norm is not None if final_norm is None else final_norm
    state = llama_to_latent_state(read_llama_state(path), hf, final_norm)
    own = latent.state_dict()
    for key, value in state.items():
        copy_full(own[key], value)


@torch.no_grad()
def copy_full(dst: torch.Tensor, value: torch.Tensor) -> None:
    """Copy a whole checkpoint tensor into `dst`, a plain tensor or a DTensor (a parameter
    FSDP or TP already sharded: the meta-device build initialises after sharding), each rank
    keeping its own shard."""
    value = value.to(dtype=dst.dtype, device=dst.device)
    placements = getattr(dst, "placements", None)
    if placements is not None:
        from torch.distributed.tensor import distribute_tensor

        value = distribute_tensor(value, dst.device_mesh, placements, src_data_rank=None)
    dst.copy_(value)
