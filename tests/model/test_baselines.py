"""Baselines (bltx/model/baselines.py): byte-level and BPE-token transformers trained by the
ordinary trainer, and the causal `bpe` patcher."""

import math

import pytest
import torch

import bltx
from bltx.bytes import encode
from bltx.config import load_recipe
from bltx.eval.flops import total_flops_per_byte as model_flops_per_byte
from helpers import read_metrics, write_recipe

pytest.importorskip("tokenizers")

BYTE = {"type": "byte_transformer", "dim": 32, "n_layers": 1, "n_heads": 2}
BPE = {"type": "bpe_transformer", "dim": 32, "n_layers": 1, "n_heads": 2, "vocab_size": 300}


def test_byte_transformer_trains(tmp_path):
    from bltx.train.trainer import Trainer

    Trainer(load_recipe(write_recipe(tmp_path, model=BYTE, training={"steps": 3}))).fit()
    rows = read_metrics(tmp_path / "run")
    assert len(rows) == 3 and rows[0].get("mean_patch_length") is None  # does not patch


def test_bpe_transformer_trains_and_logs_bytes_per_token(tmp_path):
    from bltx.train.trainer import Trainer

    Trainer(load_recipe(write_recipe(tmp_path, model=BPE, training={"steps": 3}))).fit()
    rows = read_metrics(tmp_path / "run")
    assert len(rows) == 3 and all(1.0 < r["mean_patch_length"] < 8.0 for r in rows)


def test_bpe_nll_is_token_nll_plus_the_next_byte():
    torch.set_num_threads(1)
    torch.manual_seed(0)
    model = bltx.build_model(BPE).eval()
    ids = torch.stack([encode("First Citizen:\nBefore we", bos=True), encode("hello there, my friend!!!", bos=False)])
    targets = torch.cat([ids[:, 1:], torch.full((2, 1), 4 + ord("x"))], dim=1)
    with torch.no_grad():
        total = model(ids, targets).nll
        logits = model(ids).logits
        tokens, n_tokens, _, token_len = model.tokenize(ids)
        logp = torch.log_softmax(model.lm(tokens), -1)
    direct = 0.0
    for b in range(2):
        n = int(n_tokens[b])
        direct -= sum(float(logp[b, j - 1, tokens[b, j]]) for j in range(1, n + 1))
        assert int(token_len[b, 1: n + 1].sum()) == ids.shape[1] - 1  # tokens cover the bytes
        direct -= float(logits[b, -1, targets[b, -1]])  # the byte after the window
    assert math.isclose(float(total), direct, rel_tol=1e-4)
    # Every row is a distribution over the next byte; the last one is exact.
    torch.testing.assert_close(logits.exp().sum(-1), torch.ones(2, ids.shape[1]))
    # Causal: the rows never look at bytes after them (the old loss-carrying logits did).
    changed = ids.clone()
    changed[:, -3:] = 4 + ord("z")
    with torch.no_grad():
        again = model(changed).logits
    torch.testing.assert_close(again[:, 0], logits[:, 0])


def test_bpe_trainer_and_eval_use_token_nll(tmp_path):
    torch.manual_seed(0)
    model = bltx.build_model(BPE)
    ids = encode("To be, or not to be", bos=True)[None]
    targets = torch.cat([ids[:, 1:], ids[:, :1]], dim=1)
    out = model(ids, targets)
    nll, starts = out.nll, out.starts
    assert out.logits is None and torch.equal(starts, model.patch(ids))
    nll.backward()
    grads = [p.grad for p in model.parameters()]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)


def test_flops_per_byte_of_baselines():
    torch.manual_seed(0)
    byte = bltx.build_model(BYTE)
    bpe = bltx.build_model(BPE)
    assert model_flops_per_byte(byte, 1.0, 64, training=True) == 3 * model_flops_per_byte(byte, 1.0, 64)
    # Longer tokens -> fewer FLOPs per byte.
    assert model_flops_per_byte(bpe, 4.0, 64) < model_flops_per_byte(bpe, 2.0, 64)


def test_bpe_patcher_follows_tokens_causally():
    patcher = bltx.build("patcher", {"type": "bpe", "vocab_size": 300})
    text = "First Citizen: we are accounted poor citizens"
    ids = encode(text, bos=True)[None]
    starts = patcher(ids)[0, 1:].tolist()
    patches, cur = [], b""
    for byte, s in zip(text.encode(), starts):
        if s and cur:
            patches.append(cur)
            cur = b""
        cur += bytes([byte])
    patches.append(cur)
    assert b"".join(patches) == text.encode()
    assert 1.5 < len(text) / len(patches) < 6  # token-sized, neither bytes nor words


def test_bpe_generates_the_same_batched_as_alone():
    """Generation recomputes it (no cached session) over right-padded prompts: its rows are
    causal, so the padding after a shorter prompt is never read, and prompts of different
    lengths batched give the bytes each gives alone."""
    from bltx.infer.generate import generate

    torch.manual_seed(0)
    model = bltx.build_model(BPE).eval()
    prompts = ["First Citizen:\nBefore we", "Speak"]
    batched = generate(model, prompts, max_new_bytes=12)
    alone = [generate(model, [p], max_new_bytes=12)[0] for p in prompts]
    assert [b.tolist() for b in batched] == [a.tolist() for a in alone]
