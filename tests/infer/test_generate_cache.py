"""The cache protocol (bltx/model/cache.py) through generation: prefill equals stepping the
prompt byte by byte, cached equals recomputed for every patcher and latent that caches
(greedy, float64, prompts ending on every patch phase), batch rows equal the prompt alone,
and a component without the protocol falls back with one notice naming it."""

import importlib

import pytest
import torch

import plugins.gru_latent  # noqa: F401  (registers latent "gru": a one-file plugin that caches)
from bltx.bytes import encode
from bltx.infer import SamplingConfig, generate
from helpers import PATCHERS, PROMPTS, model_with

pytestmark = pytest.mark.usefixtures("one_thread")  # byte steps run on one thread (conftest.py)

GREEDY = SamplingConfig(allow_eos=False)


LATENTS = {
    "recurrent": {"type": "recurrent", "dim": 48, "n_layers": 2},
    "gru_plugin": {"type": "gru", "dim": 48},
}


def same_as_recompute(model, prompts=PROMPTS, n=40):
    cached = generate(model, prompts, n, sampling=GREEDY)
    full = generate(model, prompts, n, sampling=GREEDY, use_cache=False)
    assert [c.tolist() for c in cached] == [f.tolist() for f in full]


@pytest.mark.parametrize("name", list(PATCHERS))
def test_cached_equals_recompute_per_patcher(name):
    same_as_recompute(model_with(PATCHERS[name]))


@pytest.mark.parametrize("name", list(LATENTS))
def test_cached_equals_recompute_per_latent(name):
    same_as_recompute(model_with(PATCHERS["static"], LATENTS[name]))


def test_prefill_equals_stepping_byte_by_byte():
    model = model_with(PATCHERS["entropy"])
    ids = encode("Prefill me, then step me.", bos=True)[None]
    T = ids.shape[1]
    whole = model.new_session(1, T + 4)
    a = whole.prefill(ids, torch.tensor([T]))
    stepped = model.new_session(1, T + 4)
    stepped.prefill(ids[:, :1], torch.tensor([1]))
    for t in range(1, T):
        opens = stepped.feed(ids[:, t])
        stepped.advance(opens, opens.long().tolist())
        b = stepped.decode()
    torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-6)
    # The host bookkeeping agrees with the forward's patching of the same bytes.
    starts = model.patch(ids, include_next=True)[0]
    assert whole.patches == stepped.patches == [int(starts[1:].sum())]
    assert whole.run == stepped.run
    # Every cache ends in the same place: the next byte gives the same logits too.
    nxt = a.argmax(-1)
    for s in (whole, stepped):
        opens = s.feed(nxt)
        if bool(opens[0]):
            s.close(opens, T + 4)
    torch.testing.assert_close(whole.decode(), stepped.decode(), rtol=1e-6, atol=1e-6)


def test_batch_rows_equal_prompts_alone():
    model = model_with(PATCHERS["entropy"], seed=3)
    prompts = ["Hi", "A much longer prompt, with words", "z", "two words"]
    batched = generate(model, prompts, 30, sampling=GREEDY)
    for prompt, out in zip(prompts, batched):
        assert generate(model, [prompt], 30, sampling=GREEDY)[0].tolist() == out.tolist()


def test_component_without_protocol_falls_back_naming_it(capsys, monkeypatch):
    module = importlib.import_module("bltx.infer.generate")
    monkeypatch.setattr(module, "_warned", set())
    model = model_with(PATCHERS["static"], LATENTS["gru_plugin"])
    monkeypatch.delattr(type(model.latent), "init_cache")  # a latent without the protocol
    a = generate(model, ["abc"], 10, sampling=GREEDY)
    generate(model, ["abc"], 10, sampling=GREEDY)
    err = capsys.readouterr().err
    assert err.count("generating by full recomputation") == 1
    assert "model.latent (GruLatent)" in err
    assert len(a[0]) == 10
