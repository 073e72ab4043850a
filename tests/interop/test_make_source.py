"""tools/make_source.py (step 0 of the byte-ifying example): a tiny run through its CLI
leaves a Hugging Face folder that loads, a tokenizer that spells text back exactly, and a
source.json whose held-out bpb a second, independent scorer here reproduces."""

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

transformers = pytest.importorskip("transformers")
pytest.importorskip("tokenizers")

ROOT = Path(__file__).resolve().parents[2]
KEYS = {"train_flops", "flops_per_token", "steps", "train_tokens", "held_out_bpb", "train_bpb_last",
        "bytes_per_token", "params", "vocab_size", "config", "seconds"}
TINY = ["--steps", "5", "--dim", "32", "--layers", "1", "--heads", "2", "--vocab", "300", "--ctx", "32", "--batch", "4"]


@pytest.fixture(scope="module")
def source(tmp_path_factory):
    out = tmp_path_factory.mktemp("source")
    cmd = [sys.executable, "tools/make_source.py", "--out", str(out), *TINY]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return out, proc


def held_out_bytes() -> bytes:
    """bltx's own validation split of the bundled corpus (the loader, not the tool's
    arithmetic), as bytes: ids are byte + 4, and BOS/EOS (< 4) are not bytes."""
    from bltx.data.loader import build_data
    from bltx.sections import DataConfig

    data = build_data(DataConfig(paths=["bltx:tiny_shakespeare"], validation_fraction=0.05))
    view = data.sources[0].validation.view
    ids = view.read(0, len(view))
    return bytes((ids[ids >= 4] - 4).tolist())


def test_the_folder_is_a_loadable_hf_model(source):
    out, _ = source
    for name in ("config.json", "model.safetensors", "tokenizer.json"):
        assert (out / name).is_file(), name
    model = transformers.LlamaForCausalLM.from_pretrained(out)
    assert model.config.vocab_size == 300 and model.config.hidden_size == 32
    assert not model.config.tie_word_embeddings


def test_the_tokenizer_round_trips_text_exactly(source):
    tok = transformers.AutoTokenizer.from_pretrained(source[0])
    text = "ROMEO:\n  But, soft!  what light\tthrough yonder window breaks? Café ☃ 日本\n\n"
    ids = tok(text, add_special_tokens=False)["input_ids"]
    assert tok.decode(ids) == text
    assert tok.eos_token == "<|endoftext|>" and len(tok) == 300


def test_source_json_has_its_numbers(source):
    out, _ = source
    info = json.loads((out / "source.json").read_text())
    assert KEYS <= set(info)
    assert info["train_flops"] > 0 and info["flops_per_token"] > 0
    assert info["train_flops"] == pytest.approx(info["flops_per_token"] * 4 * 32 * 5)
    assert 0 < info["held_out_bpb"] < 20 and info["train_bpb_last"] > 0
    assert info["steps"] == 5 and info["train_tokens"] == 5 * 4 * 32 and info["vocab_size"] == 300
    assert info["config"]["dim"] == 32 and info["config"]["ctx"] == 32


def test_held_out_bpb_is_reproduced_on_bltxs_validation_bytes(source):
    """Score the held-out split again here: bltx's validation bytes, tokenized, cut into
    32-token windows, each read from <|endoftext|>; every token is charged."""
    out, _ = source
    info = json.loads((out / "source.json").read_text())
    model = transformers.LlamaForCausalLM.from_pretrained(out).eval()
    tok = transformers.AutoTokenizer.from_pretrained(out)
    data = held_out_bytes()
    ids = tok(data.decode("utf-8"), add_special_tokens=False)["input_ids"]
    assert b"".join(tok.decode([i]).encode() for i in ids) == data  # the tokens cover every byte once
    ctx, eot, nats = 32, tok.eos_token_id, 0.0
    with torch.no_grad():
        for start in range(0, len(ids), ctx):
            window = ids[start : start + ctx]  # the last one may be shorter
            targets, inputs = torch.tensor(window), torch.tensor([eot, *window[:-1]])
            logits = model(input_ids=inputs[None]).logits[0]
            nats += F.cross_entropy(logits, targets, reduction="sum").item()
    assert info["held_out_bpb"] == pytest.approx(nats / math.log(2) / len(data), abs=1e-4)


def test_an_existing_folder_is_left_alone(source):
    out, _ = source
    before = (out / "source.json").read_text()
    cmd = [sys.executable, "tools/make_source.py", "--out", str(out), *TINY]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0 and "exists" in proc.stdout
    assert (out / "source.json").read_text() == before
