"""training.dtype = "auto": the resolution rule with the hardware probes forced both ways."""

import pytest
import torch

from bltx.train.loss import autocast_context
from bltx.parallel.fsdp import mixed_precision
from bltx.precision import resolve_dtype


def _probes(monkeypatch, amx=False, avx512_bf16=False, cuda_bf16=False):
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: amx)
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: avx512_bf16)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: cuda_bf16)


@pytest.mark.parametrize("amx, avx, want", [
    (False, False, "float32"), (True, False, "bfloat16"), (False, True, "bfloat16"),
])
def test_auto_on_cpu_follows_native_bf16(monkeypatch, amx, avx, want):
    _probes(monkeypatch, amx=amx, avx512_bf16=avx)
    dtype, reason = resolve_dtype("auto", torch.device("cpu"))
    assert dtype == want
    assert ("without native bf16" in reason) == (want == "float32")


@pytest.mark.parametrize("bf16, want", [(True, "bfloat16"), (False, "float32")])
def test_auto_on_cuda_follows_bf16_support(monkeypatch, bf16, want):
    _probes(monkeypatch, amx=not bf16, cuda_bf16=bf16)  # the CPU probes must not matter
    assert resolve_dtype("auto", "cuda:0")[0] == want


@pytest.mark.parametrize("explicit", ["float32", "bfloat16"])
def test_explicit_dtype_wins(monkeypatch, explicit):
    _probes(monkeypatch, amx=explicit == "float32", cuda_bf16=explicit == "float32")
    assert resolve_dtype(explicit, "cpu") == (explicit, "set in the recipe")
    assert resolve_dtype(explicit, "cuda")[0] == explicit


def test_consumers_resolve_auto(monkeypatch):
    _probes(monkeypatch, amx=True)
    with autocast_context(torch.device("cpu"), "auto"):
        assert torch.is_autocast_enabled("cpu")
    assert mixed_precision("auto", "cpu").param_dtype == torch.bfloat16
    _probes(monkeypatch)
    with autocast_context(torch.device("cpu"), "auto"):
        assert not torch.is_autocast_enabled("cpu")
    assert mixed_precision("auto", "cpu").param_dtype is None


def test_unknown_dtype_is_an_error():
    with pytest.raises(ValueError, match="fp16"):
        resolve_dtype("fp16", "cpu")
