"""Shared test setup: hypothesis profiles (few examples under CI=true, more by default;
HYPOTHESIS_PROFILE=thorough for many), the `slow` marker, and shared fixtures. Shared
helpers (not fixtures) are in helpers.py; test modules never import one another."""

import os

import pytest
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


@pytest.fixture(scope="module")
def one_thread():
    """Torch on one thread for a module (`pytestmark = pytest.mark.usefixtures("one_thread")`):
    byte-at-a-time generation is all tiny ops, and extra threads only add contention."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


# ---- the `slow` marker --------------------------------------------------------------------
# `make test-fast` (pytest -m "not slow") runs everything but these; `make test` runs all.
# Slow: whole modules that compile or launch process groups, and any test whose own code
# starts a subprocess (the real CLI, torchrun); marked here by reading the test's source,
# so a new CLI test is slow without anyone remembering to say so. Modules are named by
# basename, whatever folder they are in (test file names are unique across tests/).
SLOW_MODULES = {"test_launch_matrix", "test_generate_compiled", "test_compiled_training", "test_model_compile"}
SLOW_CALLS = ("run_cli(", "subprocess.", "torchrun", "run_torchrun(", "compile=True")
SLOW_TESTS = {"test_fast_paths_compile_fullgraph"}  # inductor code generation on CPU


def pytest_configure(config):
    config.addinivalue_line("markers", "slow: launch matrix, compiled paths, subprocess CLI runs "
                                       "(left out by `make test-fast`)")


def pytest_collection_modifyitems(config, items):
    import inspect

    for item in items:
        module = item.module.__name__.rpartition(".")[2]
        try:
            source = inspect.getsource(item.function)
        except (OSError, TypeError):
            source = ""
        if module in SLOW_MODULES or item.originalname in SLOW_TESTS or any(call in source for call in SLOW_CALLS):
            item.add_marker(pytest.mark.slow)
