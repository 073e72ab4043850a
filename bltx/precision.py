"""`training.dtype = "auto"`: bf16 autocast where the device runs bf16 natively, else fp32.

bf16 only pays where the hardware multiplies bf16 natively: CUDA GPUs with bf16 support,
and CPUs with AMX tiles or avx512_bf16. Elsewhere PyTorch emulates bf16 GEMMs by
converting to fp32 and back, which on a 2-core Cascade Lake ran 3.4x slower than plain
fp32 (issue 12), so "auto" picks float32 there. Explicit "float32"/"bfloat16" are kept as
written. Every consumer of `training.dtype` resolves through `resolve_dtype`, so none can
read "auto" as "not bfloat16" by accident.
"""

from __future__ import annotations

import torch

DTYPES = ("auto", "float32", "bfloat16")


def _cpu_native_bf16() -> tuple[bool, str]:
    # Private probes of torch.cpu (present in torch >= 2.3); a missing one counts as "no".
    probes = (("AMX", "_is_amx_tile_supported"), ("avx512_bf16", "_is_avx512_bf16_supported"))
    for label, name in probes:
        probe = getattr(torch.cpu, name, None)
        if probe is not None and probe():
            return True, f"CPU with native bf16 ({label})"
    return False, "CPU without native bf16: no AMX/avx512_bf16"


def _device_type(device) -> str:
    if device is None:
        return "cuda" if torch.cuda.is_available() else "cpu"
    return torch.device(device).type


def resolve_dtype(dtype: str, device=None) -> tuple[str, str]:
    """("float32" | "bfloat16", reason) for a `training.dtype` value on `device`
    (a torch.device, a string, or None for the default device of this process)."""
    if dtype not in DTYPES:
        raise ValueError(f"unknown dtype '{dtype}'; expected one of {', '.join(DTYPES)}")
    if dtype != "auto":
        return dtype, "set in the recipe"
    kind = _device_type(device)
    if kind == "cuda":
        if torch.cuda.is_bf16_supported():
            return "bfloat16", "CUDA device with bf16 support"
        return "float32", "CUDA device without bf16 support"
    if kind == "cpu":
        native, reason = _cpu_native_bf16()
        return ("bfloat16" if native else "float32"), reason
    return "float32", f"no native-bf16 check for device type '{kind}'"


def resolved_dtype(dtype: str, device=None) -> str:
    """Just the dtype name of `resolve_dtype`."""
    return resolve_dtype(dtype, device)[0]
