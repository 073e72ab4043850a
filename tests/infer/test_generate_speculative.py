"""Speculative decoding with the entropy model as the draft (bltx/infer/speculative.py):
greedy output equals plain cached decoding for every k, both when drafts are rejected (random
weights) and when most are accepted (an oracle draft that knows the greedy bytes, with every
fifth draft wrong), and sampling runs under the acceptance rule."""

import pytest
import torch

from bltx.bytes import OFFSET
from bltx.infer import SamplingConfig, generate
from bltx.infer.speculative import SpeculativeStats
from helpers import PATCHERS, PROMPTS, model_with

pytestmark = pytest.mark.usefixtures("one_thread")  # byte steps run on one thread (conftest.py)

GREEDY = SamplingConfig(allow_eos=False)


@pytest.mark.parametrize("name", ["entropy", "entropy_monotonic"])
def test_greedy_equals_plain_with_rejections(name):
    model = model_with(PATCHERS[name])
    plain = generate(model, PROMPTS, 30, sampling=GREEDY)
    for k in (1, 4):
        spec = generate(model, PROMPTS, 30, sampling=GREEDY, speculative_k=k)
        assert [s.tolist() for s in spec] == [p.tolist() for p in plain]


def test_greedy_equals_plain_when_drafts_are_accepted(monkeypatch):
    model = model_with(dict(PATCHERS["entropy"], max_patch_length=9))
    prompt = "The cat sat."
    ref = generate(model, [prompt], 60, sampling=GREEDY)[0].tolist()
    start = len(prompt) + 1  # BOS
    patcher = model.patcher
    real_step = type(patcher)._online_step

    def oracle_step(self, ids, state):
        opens = real_step(self, ids, state)
        i = int(state.pos[0]) + 1 - start  # index of the byte after this one
        logits = torch.zeros_like(state.extra["logits"])
        if 0 <= i < len(ref):
            logits[0, ref[i] if i % 5 else OFFSET + (ref[i] - OFFSET + 1) % 256] = 50.0
        state.extra["logits"] = logits
        return opens

    monkeypatch.setattr(type(patcher), "_online_step", oracle_step)
    stats = SpeculativeStats()
    for k in (2, 5, 8):
        spec = generate(model, [prompt], 60, sampling=GREEDY, speculative_k=k, speculative_stats=stats)[0]
        assert spec.tolist() == ref
    assert 0.5 < stats.acceptance < 1.0


def test_sampling_runs_under_the_acceptance_rule():
    model = model_with(PATCHERS["entropy"])
    stats = SpeculativeStats()
    cfg = SamplingConfig(temperature=1.0, top_k=20, allow_eos=False)
    out = generate(model, ["abc"], 40, sampling=cfg, seed=0, speculative_k=4, speculative_stats=stats)[0]
    assert len(out) == 40 and int(out.min()) >= OFFSET and stats.drafted > 0
