"""Supervised fine-tuning data: prompt/completion and chat records, the completion-only
loss, examples packed whole into windows, show_data's marks and bad input, through the
real loader and the real CLI."""

import json
import math
import random

import numpy as np
import pytest
import torch

from bltx.bytes import BOS_ID, EOS_ID, IGNORE_ID, OFFSET, PAD_ID, VOCAB_SIZE, decode_bytes
from bltx.data.loader import build_data
from bltx.model.output import lm_output
from bltx.sections import DataConfig
from bltx.train.loss import evaluate_bpb
from helpers import run_cli

LETTERS = "abcdefghijklmnopqrstuvwxyz"


def yes_jsonl(path, n=2000, seed=0, long_every=0):
    """{"prompt": "<random letters>?", "completion": "yes\\n"} lines (every `long_every`-th
    prompt 300 letters long: longer than a window)."""
    rng = random.Random(seed)
    with open(path, "w") as f:
        for i in range(n):
            k = 300 if long_every and i % long_every == 0 else rng.randint(20, 40)
            f.write(json.dumps({"prompt": "".join(rng.choice(LETTERS) for _ in range(k)) + "?",
                                "completion": "yes\n"}) + "\n")
    return path


def data(tmp_path, path, **kw):
    cfg = {"paths": [str(path)], "records": "prompt_completion", "seq_len": 96,
           "cache_dir": str(tmp_path / "cache"), **kw}
    return build_data(DataConfig(**cfg))


def shown(ids) -> bytes:
    """Ids as bytes, EOS as "|"."""
    return b"".join(b"|" if i == EOS_ID else decode_bytes([i]) for i in ids.tolist())


def all_windows(windows):
    return [windows.window(i) for i in range(len(windows))]


def test_loss_on_completion_learns_the_answer_and_all_does_not(tmp_path):
    """The issue's must-show: the same 100 steps of a small BLT (recipes/tiny.toml, shrunk
    by overrides) reach a training bpb below 0.5 on the completions, above 3 on all bytes."""
    corpus = yes_jsonl(tmp_path / "yes.jsonl")
    bpb = {}
    for loss_on in ("completion", "all"):
        run = tmp_path / loss_on
        proc = run_cli(
            "recipes/tiny.toml", "--set", f'data.paths=["{corpus}"]', "--set", "data.records=prompt_completion",
            "--set", f"data.loss_on={loss_on}", "--set", "data.document_mask=true", "--set", "data.seq_len=96",
            "--set", "model.patcher={type='static', stride=4}",
            "--set", "model.latent={type='transformer', dim=64, n_layers=1, n_heads=2}",
            "--set", "model.encoder.dim=32", "--set", "model.decoder.dim=32", "--set", "model.decoder.n_layers=1",
            "--set", "model.encoder.window=96", "--set", "model.decoder.window=96",
            "--set", "model.byte_embedder.hash_vocab=512", "--set", "training.steps=100",
            "--set", "metrics.log_interval=20", "--set", "eval.interval=0", "--set", "checkpoint.enable=false",
            "--set", f"job.dump_dir={run}", "--set", f"data.cache_dir={tmp_path}/cache",
            "--set", "metrics.tensorboard=false", timeout=400)
        assert proc.returncode == 0, proc.stderr
        records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
        bpb[loss_on] = [r["bpb"] for r in records if r["split"] == "train"][-1]
    assert bpb["completion"] < 0.5, bpb
    assert bpb["all"] > 3.0, bpb


def test_examples_are_packed_whole_and_only_completions_are_trained(tmp_path):
    corpus = yes_jsonl(tmp_path / "yes.jsonl", n=300, long_every=50)  # some longer than a window
    d = data(tmp_path, corpus, loss_on="completion", validation_fraction=0.1)
    windows = all_windows(d.train) + all_windows(d.validation)
    seen_prompts, trained_bytes = 0, []
    for ids, _, trained in windows:
        assert len(ids) == 97 and not trained[0]  # id 0 is never a target
        real = ids[ids != PAD_ID]
        assert (ids[len(real):] == PAD_ID).all() and not trained[len(real):].any()  # padding at the end only
        bos = np.flatnonzero(real == BOS_ID)
        eos = np.flatnonzero(real == EOS_ID)
        if len(bos) and len(eos) and eos[-1] > bos[-1] and real[0] == BOS_ID:
            assert len(bos) == len(eos)  # a window of short examples holds them whole
        seen_prompts += int((real == OFFSET + ord("?")).sum())
        trained_bytes.append(shown(ids[trained]))
    assert seen_prompts == 300  # every example once, across train and validation
    # Exactly the completions and the EOS after each are trained: "yes\n" + EOS, 300 times.
    assert b"".join(trained_bytes).count(b"yes\n|") == 300
    assert sum(len(t) for t in trained_bytes) == 300 * 5
    # The split lies on an example boundary: validation starts with a whole example.
    assert d.validation.window(0)[0][0] == BOS_ID


def test_all_bytes_trained_and_targets_of_a_batch(tmp_path):
    corpus = yes_jsonl(tmp_path / "yes.jsonl", n=50)
    d = data(tmp_path, corpus, loss_on="all", document_mask=True)
    batch = d.train.batch([0, 1])
    ids, targets, doc = batch["ids"], batch["targets"], batch["doc_ids"]
    # Every byte and EOS is a target; BOS (the step to the next example) and padding are not.
    nxt = torch.cat([ids[:, 1:], targets[:, -1:]], dim=1)
    expect = torch.where((nxt >= OFFSET) | (nxt == EOS_ID), nxt, IGNORE_ID)
    assert torch.equal(targets, expect)
    assert (targets == IGNORE_ID).any() and (doc[:, -1] > doc[:, 0]).all()


class Uniform(torch.nn.Module):
    """Every id equally likely: each scored target costs log(260) nats."""

    def forward(self, ids, targets=None, **ignored):
        return lm_output(torch.zeros(*ids.shape, VOCAB_SIZE), targets)


def test_validation_bpb_counts_completion_bytes_only(tmp_path):
    corpus = yes_jsonl(tmp_path / "yes.jsonl", n=200)
    d = data(tmp_path, corpus, loss_on="completion", validation_fraction=0.2)
    batches = [d.validation.batch(list(range(i, min(i + 8, len(d.validation)))))
               for i in range(0, len(d.validation), 8)]
    examples = sum(int((b["ids"] == BOS_ID).sum()) for b in batches)
    res = evaluate_bpb(Uniform(), batches, torch.device("cpu"))
    assert res.bytes == 4 * examples and res.targets == 5 * examples  # "yes\n" and its EOS
    assert res.bpb == pytest.approx(math.log2(VOCAB_SIZE) * 5 / 4)
    assert res.loss == pytest.approx(math.log(VOCAB_SIZE))


def test_chat_records_from_parquet_train_assistant_turns(tmp_path):
    pa = pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq

    chats = [[{"role": "user", "content": f"hi {i}"}, {"role": "assistant", "content": "hello"},
              {"role": "user", "content": "bye"}, {"role": "assistant", "content": f"ciao {i}"}] for i in range(40)]
    pq.write_table(pa.table({"messages": chats}), tmp_path / "chat.parquet", row_group_size=16)
    template = {"user": "U: {content}\n", "assistant": "A: {content}</a>\n"}
    d = data(tmp_path, tmp_path / "chat.parquet", records="chat", loss_on="completion", template=template,
             validation_fraction=0.0, seq_len=128)
    trained, text = b"", b""
    for ids, _, mask in all_windows(d.train):
        trained += shown(ids[mask]) + b"/"
        text += decode_bytes(ids)
    assert b"U: hi 7\nA: hello</a>\nU: bye\nA: ciao 7</a>\n" in text  # rendered with the template
    assert trained.count(b"hello</a>\n") == 40 and b"ciao 39</a>\n|" in trained
    assert b"U:" not in trained and b"A:" not in trained and b"hi" not in trained


def sft_cli(tmp_path, corpus, *sets, task="show_data"):
    return run_cli("recipes/tiny.toml", "--set", f'data.paths=["{corpus}"]', "--set", f"job.task={task}",
                   "--set", f"job.dump_dir={tmp_path}/run", "--set", f"data.cache_dir={tmp_path}/cache",
                   *[a for s in sets for a in ("--set", s)], timeout=120)


def test_show_data_marks_the_bytes_trained_on(tmp_path):
    corpus = yes_jsonl(tmp_path / "yes.jsonl", n=100)
    proc = sft_cli(tmp_path, corpus, "data.records=prompt_completion", "data.loss_on=completion", "data.seq_len=96")
    assert proc.returncode == 0, proc.stderr
    assert "examples 'prompt' + 'completion', loss on completion" in proc.stdout
    assert "?\u27e6yes\n<|eos|>\u27e7<|bos|>" in proc.stdout  # completion and its EOS, nothing else
    assert "<|pad|>x" in proc.stdout


@pytest.mark.parametrize("line,sets,message", [
    ({"prompt": "a?"}, ["data.records=prompt_completion"], "line 1: no field 'completion' (fields: prompt); set data."),
    ({"messages": [{"role": "robot", "content": "x"}]}, ["data.records=chat"],
     "line 1 message 0: role 'robot' has no data.template entry"),
    ({"text": "plain"}, ["data.loss_on=completion"], 'data.loss_on = \'completion\': needs examples'),
])
def test_bad_fine_tuning_input_is_one_line_exit_2(tmp_path, line, sets, message):
    corpus = tmp_path / "bad.jsonl"
    corpus.write_text(json.dumps(line) + "\n")
    proc = sft_cli(tmp_path, corpus, *sets)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], lines
