"""Shared test setup: hypothesis profiles (few examples under CI=true, more by default;
HYPOTHESIS_PROFILE=thorough for many) and small helpers."""

import os
import subprocess
import sys
from pathlib import Path

from hypothesis import HealthCheck, settings

settings.register_profile(
    "ci", max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
settings.register_profile(
    "dev", max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
settings.register_profile(
    "thorough", max_examples=1000, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
settings.load_profile(
    os.environ.get("HYPOTHESIS_PROFILE", "ci" if os.environ.get("CI") == "true" else "dev")
)

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = Path(__file__).resolve().parent / "fixtures"


def random_blt(patcher: dict, seed: int = 0, *, latent: dict | None = None, all_layers: bool = True,
               ngram_sizes: tuple[int, ...] = (3, 5), encoder_window: int = 24, decoder_window: int | None = None):
    """A tiny float64 BLT in eval mode for generation tests. Large random weights (std 0.3):
    sharp, varied predictions, so greedy paths and patch boundaries depend on every
    component and a wrong cache shows up at once. Small windows make the ring caches wrap."""
    import torch

    import bltx

    decoder = {"type": "local", "dim": 32, "n_layers": 2, "n_heads": 2, "cross_attn_k": 2,
               "cross_attn_all_layers": all_layers}
    if decoder_window is not None:
        decoder["window"] = decoder_window
    table = {
        "type": "blt",
        "patcher": patcher,
        "byte_embedder": {"type": "hash_ngram", "hash_vocab": 97, "ngram_sizes": list(ngram_sizes)},
        "encoder": {"type": "local", "dim": 32, "n_layers": 2, "n_heads": 2, "window": encoder_window,
                    "cross_attn_k": 2, "cross_attn_all_layers": all_layers},
        "latent": latent or {"type": "transformer", "dim": 48, "n_layers": 2, "n_heads": 4, "n_kv_heads": 2},
        "decoder": decoder,
    }
    torch.manual_seed(seed)
    model = bltx.build_model(table).double()
    for p in model.parameters():
        torch.nn.init.normal_(p, std=0.3)
    return model.eval()


def run_cli(*args: str, cwd: Path = ROOT, timeout: int = 300, env: dict | None = None):
    """Run `python -m bltx.run ARGS` in a subprocess; returns CompletedProcess."""
    full_env = {**os.environ, "PYTHONPATH": str(ROOT), **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "bltx.run", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        env=full_env,
    )


# ---- the `slow` marker --------------------------------------------------------------------
# `make test-fast` (pytest -m "not slow") runs everything but these; `make test` runs all.
# Slow: whole modules that compile or launch process groups, and any test whose own code
# starts a subprocess (the real CLI, torchrun); marked here by reading the test's source,
# so a new CLI test is slow without anyone remembering to say so.
SLOW_MODULES = {"test_launch_matrix", "test_generate_compiled", "test_compiled_training", "test_model_compile"}
SLOW_CALLS = ("run_cli(", "subprocess.", "torchrun", "run_torchrun(", "compile=True")
SLOW_TESTS = {"test_fast_paths_compile_fullgraph"}  # inductor code generation on CPU


def pytest_configure(config):
    config.addinivalue_line("markers", "slow: launch matrix, compiled paths, subprocess CLI runs "
                                       "(left out by `make test-fast`)")


def pytest_collection_modifyitems(config, items):
    import inspect

    import pytest

    for item in items:
        module = item.module.__name__.rpartition(".")[2]
        try:
            source = inspect.getsource(item.function)
        except (OSError, TypeError):
            source = ""
        if module in SLOW_MODULES or item.originalname in SLOW_TESTS or any(call in source for call in SLOW_CALLS):
            item.add_marker(pytest.mark.slow)
