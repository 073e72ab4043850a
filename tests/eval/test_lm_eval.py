"""The lm-evaluation-harness adapter on a tiny trained run: loglikelihood equals an
independent sum of the model's log-probabilities of the continuation bytes, rolling
loglikelihood and generation agree with the model's own, and a local multiple-choice task
(YAML + JSONL written here) runs end to end through `python -m bltx.run`."""

from __future__ import annotations

import json
import os
from types import SimpleNamespace

import pytest
import torch

from bltx.bytes import BOS_ID, OFFSET, decode
from bltx.config import load_recipe
from bltx.infer.generate import generate
from bltx.train.trainer import Trainer
from bltx.train.trained import load_trained_model
from helpers import ROOT, run_cli

pytest.importorskip("lm_eval")
from bltx.eval.lm_eval_adapter import BltxLM  # noqa: E402

TINY = ["training.steps=2", "data.seq_len=64", "data.batch_size=2", "eval.interval=0",
        "checkpoint.interval=0", "training.dtype=float32", "metrics.progress_bar=false",
        "metrics.tensorboard=false", "metrics.log_interval=1"]


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """A tiny trained run of recipes/tiny.toml (realtime entropy patching) and its model."""
    folder = tmp_path_factory.mktemp("lm_eval")
    overrides = [*TINY, f"job.dump_dir={folder / 'run'}"]
    recipe = load_recipe(ROOT / "recipes" / "tiny.toml", overrides)
    Trainer(recipe).fit()
    ckpt = next((folder / "run" / "checkpoints").glob("step_*"))
    model = load_trained_model(recipe, ckpt, torch.device("cpu"))
    return SimpleNamespace(folder=folder, overrides=overrides, model=model)


def requests(*args):
    return [SimpleNamespace(args=a) for a in args]


@torch.no_grad()
def reference_logprob(model, context: str, continuation: str) -> tuple[float, bool]:
    """One unpadded sequence through the model (patcher in the loop), summed by hand."""
    ctx = [BOS_ID] + [b + OFFSET for b in context.encode()]
    cont = [b + OFFSET for b in continuation.encode()]
    ids = torch.tensor([ctx + cont])
    logp = torch.log_softmax(model(ids[:, :-1]).logits.float(), dim=-1)[0]
    total, greedy = 0.0, True
    for k, target in enumerate(cont):
        pos = len(ctx) - 1 + k  # logits at pos predict id pos + 1
        total += float(logp[pos, target])
        greedy &= int(logp[pos].argmax()) == target
    return total, greedy


def test_loglikelihood_equals_the_models_own_sum(run):
    lm = BltxLM(run.model, torch.device("cpu"), "float32", batch_size=3, max_length=128)
    pairs = [("To be, or not to", " be"), ("ROMEO:", " O, she doth teach the torches"), ("", "First Citizen"),
             ("Wherefore art thou", " Romeo?"), ("ünï", "cödé ✓")]
    got = lm.loglikelihood(requests(*pairs))
    for (ctx, cont), (lp, greedy) in zip(pairs, got):
        want, want_greedy = reference_logprob(run.model, ctx, cont)
        assert lp == pytest.approx(want, abs=1e-4) and greedy == want_greedy
    # Cut from the left to max_length: only the continuation's context shrinks.
    short = BltxLM(run.model, torch.device("cpu"), "float32", batch_size=2, max_length=8)
    [(lp, _)] = short.loglikelihood(requests(("a long context that is cut", " tail")))
    ids = torch.tensor([[b + OFFSET for b in b" cut tail"]])  # the last 8 + 1 bytes
    with torch.no_grad():
        logp = torch.log_softmax(run.model(ids[:, :-1]).logits.float(), dim=-1)[0]
    assert lp == pytest.approx(float(sum(logp[3 + k, ids[0, 4 + k]] for k in range(5))), abs=1e-4)


def test_rolling_loglikelihood_scores_every_byte_once(run):
    lm = BltxLM(run.model, torch.device("cpu"), "float32", batch_size=4, max_length=128)
    text = "Now is the winter of our discontent"
    [rolled] = lm.loglikelihood_rolling(requests((text,)))
    assert rolled == pytest.approx(reference_logprob(run.model, "", text)[0], abs=1e-4)
    # Longer than a window: windows of max_length, each scored byte with the most context.
    small = BltxLM(run.model, torch.device("cpu"), "float32", batch_size=4, max_length=16)
    tokens = [BOS_ID] + [b + OFFSET for b in text.encode()]
    want = 0.0
    for start in range(1, len(tokens), 16):
        end = min(start + 16, len(tokens))
        window = torch.tensor([tokens[max(0, end - 17) : end]])
        with torch.no_grad():
            logp = torch.log_softmax(run.model(window[:, :-1]).logits.float(), dim=-1)[0]
        scored = end - start
        want += float(sum(logp[-scored + k, window[0, -scored + k]] for k in range(scored)))
    assert small.loglikelihood_rolling(requests((text,)))[0] == pytest.approx(want, abs=1e-4)


def test_generate_until_is_the_cached_greedy_output_cut_at_the_stop(run):
    lm = BltxLM(run.model, torch.device("cpu"), "float32", batch_size=2, max_length=128)
    prompts = ["ROMEO:", "First Citizen:\nBefore we proceed"]
    out = lm.generate_until(requests(*[(p, {"until": ["e"], "max_gen_toks": 12}) for p in prompts]))
    full = [decode(ids) for ids in generate(run.model, prompts, 12)]
    assert out == [text.split("e")[0] for text in full]


def test_local_multiple_choice_task_end_to_end(run, tmp_path):
    tasks = tmp_path / "tasks"
    tasks.mkdir()
    rows = [{"question": "To be, or not to", "choices": [" be", " qx"], "label": 0},
            {"question": "ROMEO:\nO, she doth teach the", "choices": [" zzqj", " torches"], "label": 1},
            {"question": "First Citizen:\nBefore we proceed any further, hear me", "choices": [" speak.", " xkcd"], "label": 0}]
    (tasks / "tiny_mc.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (tasks / "tiny_mc.yaml").write_text(
        "task: tiny_mc\ndataset_path: json\ndataset_kwargs:\n  data_files:\n"
        f"    test: {tasks / 'tiny_mc.jsonl'}\ntest_split: test\noutput_type: multiple_choice\n"
        'doc_to_text: "{{question}}"\ndoc_to_choice: "{{choices}}"\ndoc_to_target: "{{label}}"\n'
        "metric_list:\n  - metric: acc\n    aggregation: mean\n    higher_is_better: true\nmetadata:\n  version: 1.0\n"
    )
    env = {"HF_DATASETS_OFFLINE": "1", "HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf")}
    args = [a for o in run.overrides for a in ("--set", o)]
    proc = run_cli("recipes/tiny.toml", *args, "--set", "job.task=lm_eval", "--set", 'lm_eval.tasks=["tiny_mc"]',
                   "--set", f"lm_eval.include_path={tasks}", "--set", "lm_eval.include_defaults=false",
                   "--set", "lm_eval.bootstrap_iters=0", timeout=300, env={**os.environ, **env})
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "tiny_mc" in proc.stdout and "acc" in proc.stdout  # the printed table
    result = json.loads((run.folder / "run" / "lm_eval.json").read_text())
    assert result["tasks"] == ["tiny_mc"]
    acc = result["results"]["tiny_mc"]["acc,none"]
    assert 0.0 <= acc <= 1.0 and result["n-samples"]["tiny_mc"]["effective"] == 3
    # Each choice was scored by the adapter: accuracy is what the model's own sums say.
    lm = BltxLM(run.model, torch.device("cpu"), "float32", batch_size=4, max_length=128)
    picks = [max(range(2), key=lambda c: lm.loglikelihood(requests((r["question"], r["choices"][c])))[0][0])
             for r in rows]
    assert acc == pytest.approx(sum(p == r["label"] for p, r in zip(picks, rows)) / 3)


def test_unknown_task_is_one_line(run, tmp_path, capsys):
    from bltx.run import main

    (tmp_path / "empty").mkdir()
    args = [a for o in run.overrides for a in ("--set", o)]
    code = main(["recipes/tiny.toml", *args, "--set", "job.task=lm_eval", "--set", 'lm_eval.tasks=["nope"]',
                 "--set", f"lm_eval.include_path={tmp_path / 'empty'}", "--set", "lm_eval.include_defaults=false"])
    lines = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and "lm_eval.tasks: no task 'nope'" in lines[0], lines
