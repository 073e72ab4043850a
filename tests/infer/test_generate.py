"""Cached generation must reproduce full recomputation exactly (greedy), for entropy, static
and space patching, with prompts of different lengths in one batch."""

from dataclasses import dataclass

import pytest
import torch

from bltx.bytes import EOS_ID, OFFSET, encode
from bltx.infer import SamplingConfig, generate
from bltx.infer.sampling import sample_next
from bltx.patching import Patcher
from bltx.registry import get_registry, register
from helpers import TINY_ENTROPY, random_blt

pytestmark = pytest.mark.usefixtures("one_thread")  # byte steps run on one thread (conftest.py)


PATCHERS = {
    # Threshold at the median entropy of the random entropy model: mixed patch sizes.
    "entropy": {"type": "entropy", "threshold": 5.47, "model": TINY_ENTROPY, "max_patch_length": 6},
    "static": {"type": "static", "stride": 3},
    "space": {"type": "space"},
}


def patch_stats(model, ids: torch.Tensor) -> tuple[int, int]:
    starts = model.patch(ids[None])[0]
    return int(starts.sum()), ids.numel()


@pytest.mark.parametrize("name", list(PATCHERS))
def test_cached_greedy_equals_recompute(name):
    model = random_blt(PATCHERS[name])
    # Lengths 1..4 put the last prompt byte on every phase of a stride-3 patching, so some
    # prompts end exactly where a patch begins and some where the next byte opens one.
    prompts = ["a", "ab", "abc", "abcd", "The cat sat on the mat. ", "x  y"]
    sampling = SamplingConfig(allow_eos=False)
    cached = generate(model, prompts, 200, sampling=sampling, use_cache=True)
    full = generate(model, prompts, 200, sampling=sampling, use_cache=False)
    for c, f in zip(cached, full):
        assert c.tolist() == f.tolist()
        assert len(c) == 200
    # The run really exercised patching: several patches, not one per byte or one in all.
    text = encode("The cat sat on the mat. ", bos=True)
    n_patches, n_bytes = patch_stats(model, torch.cat([text, full[4]]))
    assert 1 < n_patches < n_bytes


def test_batch_rows_match_single_prompts():
    model = random_blt(PATCHERS["entropy"], seed=1)
    prompts = ["Hi", "Longer prompt here", "z"]
    batched = generate(model, prompts, 40)
    for prompt, out in zip(prompts, batched):
        alone = generate(model, [prompt], 40)[0]
        assert out.tolist() == alone.tolist()


def test_encoder_cross_attn_last_layer_only():
    model = random_blt(PATCHERS["entropy"], seed=2, all_layers=False)
    a = generate(model, ["abc", "hello"], 50, use_cache=True)
    b = generate(model, ["abc", "hello"], 50, use_cache=False)
    assert [x.tolist() for x in a] == [x.tolist() for x in b]


def test_stop_strings_and_budget():
    model = random_blt(PATCHERS["static"])
    free = generate(model, ["abc"], 30, sampling=SamplingConfig(allow_eos=False))[0]
    text = bytes(i - OFFSET for i in free.tolist())
    stop = text[5:7]  # a string that greedy decoding will produce
    out = generate(model, ["abc"], 30, sampling=SamplingConfig(allow_eos=False), stop=[stop])[0]
    out_bytes = bytes(i - OFFSET for i in out.tolist())
    assert out_bytes.endswith(stop) and len(out_bytes) <= 7
    assert text.startswith(out_bytes)
    assert len(generate(model, ["abc"], 5)[0]) <= 5


def test_sampling_rules():
    torch.manual_seed(0)
    logits = torch.randn(4, 260)
    greedy = sample_next(logits, SamplingConfig())
    assert torch.equal(greedy, sample_next(logits, SamplingConfig(temperature=1.0, top_k=1)))
    assert torch.equal(greedy, sample_next(logits, SamplingConfig(temperature=1.0, top_p=1e-6)))
    assert bool(((greedy >= OFFSET) | (greedy == EOS_ID)).all())  # each id: a byte or EOS
    g1 = torch.Generator().manual_seed(3)
    g2 = torch.Generator().manual_seed(3)
    cfg = SamplingConfig(temperature=0.8, top_k=20, top_p=0.9)
    assert torch.equal(sample_next(logits, cfg, g1), sample_next(logits, cfg, g2))
    # Special ids other than EOS are never produced.
    special = torch.full((2, 260), -10.0)
    special[:, 0] = 10.0
    assert int(sample_next(special, SamplingConfig())[0]) != 0
    with pytest.raises(ValueError):
        SamplingConfig(top_p=0.0)


class PeekingPatcher(Patcher):
    """Starts a patch at the first non-space byte after a space: it must see byte t."""

    predicts_next_start = False

    @dataclass
    class Config:
        pass

    def __init__(self, cfg):
        super().__init__()

    def compute_starts(self, ids, entropies=None):
        space = ids == OFFSET + 32
        prev = torch.nn.functional.pad(space[:, :-1], (1, 0), value=False)
        return prev & ~space


@pytest.fixture
def peeking_registered():
    # Registered only for this test: the registry is global, and other tests check that
    # every registered patcher is covered by their property tables.
    registry = get_registry("patcher")
    register("patcher", "test_peeking")(PeekingPatcher)
    yield
    registry._entries.pop("test_peeking", None)


def test_peeking_patcher_falls_back_to_recompute(capsys, peeking_registered, monkeypatch):
    import importlib

    module = importlib.import_module("bltx.infer.generate")  # the module, not the function
    monkeypatch.setattr(module, "_warned", set())  # notices other tests already gave
    model = random_blt({"type": "test_peeking"})
    a = generate(model, ["a b c"], 20)
    b = generate(model, ["a b c"], 20)
    assert a[0].tolist() == b[0].tolist()
    err = capsys.readouterr().err
    assert err.count("generating by full recomputation") == 1
