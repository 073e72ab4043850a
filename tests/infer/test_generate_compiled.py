"""The compiled decode steps (generate(..., compile=True), bltx/model/sessions/): the same
greedy bytes as the eager cached path, and no recompilation once every patch-length bucket
has been seen (a second generation of the same length compiles nothing)."""

import pytest
import torch

from bltx.infer import SamplingConfig, generate
from bltx.infer.generate import use_compile
from helpers import PATCHERS, model_with

GREEDY = SamplingConfig(allow_eos=False)


def test_compile_flag():
    assert use_compile("auto", torch.device("cuda")) and not use_compile("auto", torch.device("cpu"))
    assert use_compile("on", torch.device("cpu")) and not use_compile(False, torch.device("cuda"))
    with pytest.raises(ValueError):
        use_compile("sometimes", torch.device("cpu"))


def test_compiled_equals_eager_without_recompiles():
    from torch._dynamo.utils import counters

    model = model_with(PATCHERS["entropy"])
    prompts = ["The cat sat.", "ab"]
    eager = generate(model, prompts, 40, sampling=GREEDY, compile=False)
    first = generate(model, prompts, 40, sampling=GREEDY, compile=True)
    graphs = counters["stats"]["unique_graphs"]
    again = generate(model, prompts, 40, sampling=GREEDY, compile=True)
    assert counters["stats"]["unique_graphs"] == graphs  # warm: no new graph, no recompile
    assert [o.tolist() for o in first] == [o.tolist() for o in eager]
    assert [o.tolist() for o in again] == [o.tolist() for o in eager]
