"""Helpers the test modules share: `from helpers import ...` (tests/ is on sys.path through
`pythonpath` in pyproject.toml's [tool.pytest.ini_options]). Test modules never import one
another; what more than one of them needs lives here. Fixtures live in conftest.py.

The test folders mirror bltx/ and have no __init__.py: pytest's default (`prepend`) import
names each test module by its file name, so test file names stay unique across folders.

Heavy or optional imports (torch, bltx, pyarrow, transformers) happen inside the helpers that
need them, so importing this module costs nothing and needs no optional package."""

from __future__ import annotations

import gzip
import json
import os
import subprocess
import sys

import torch
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = Path(__file__).resolve().parent / "fixtures"
CORPUS = ROOT / "bltx" / "data" / "corpora" / "tiny_shakespeare.txt"


# ---- the command line ---------------------------------------------------------------------

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


def one_line(capsys) -> str:
    """The one `error: ` line an in-process CLI call (`bltx.run.main`) left on stderr."""
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), lines
    return lines[0]


def assert_one_clean_line(proc, *expected: str):
    """A CLI subprocess failed with exit 2 and exactly one `error: ` line holding `expected`."""
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("error: ")
    assert "Traceback" not in proc.stderr
    for text in expected:
        assert text in lines[0]


# ---- recipes and runs ---------------------------------------------------------------------

# Tiny models for tests, as recipe [model] tables.
TINY_ENTROPY_LM = {"type": "entropy_lm", "entropy_model": {"type": "transformer", "dim": 32, "n_layers": 1, "n_heads": 2}}
TINY_BLT = {
    "type": "blt",
    "patcher": {"type": "static", "stride": 4},
    "byte_embedder": {"type": "hash_ngram", "ngram_sizes": [3, 4], "hash_vocab": 64},
    "encoder": {"type": "local", "dim": 32, "n_layers": 1, "n_heads": 2},
    "latent": {"type": "transformer", "dim": 64, "n_layers": 1, "n_heads": 2},
    "decoder": {"type": "local", "dim": 32, "n_layers": 1, "n_heads": 2},
}
TINY_LEARNED = {
    "type": "learned_blt",
    "max_patches": 48,
    "byte_embedder": {"type": "hash_ngram", "ngram_sizes": [3, 4], "hash_vocab": 97},
    "encoder": {"type": "byte_layers", "dim": 32, "n_layers": 1, "n_heads": 2, "window": 16},
    "chunker": {"type": "cosine", "target_length": 4.0},
    "latent": {"type": "transformer", "dim": 48, "n_layers": 2, "n_heads": 4},
    "decoder": {"type": "local", "dim": 32, "n_layers": 2, "n_heads": 2, "window": 16},
}


def write_recipe(folder: Path, model: dict | None = None, **sections) -> Path:
    """A small recipe in `folder` (dump dir `folder/run`), sections merged over defaults."""
    from bltx.config import dumps_toml

    table = {
        "job": {"dump_dir": str(folder / "run"), "seed": 0},
        "data": {"paths": [str(CORPUS)], "seq_len": 64, "batch_size": 4, "validation_fraction": 0.05},
        "model": model or TINY_ENTROPY_LM,
        "optimizer": {"lr": 3e-3},
        "lr_scheduler": {"type": "cosine", "warmup_steps": 2},
        "training": {"steps": 6},
        "checkpoint": {"interval": 3, "keep_latest": 2},
        "metrics": {"log_interval": 1, "tensorboard": False, "progress_bar": False},
        "eval": {"interval": 0, "steps": 2},
    }
    for name, values in sections.items():
        table[name] = {**table.get(name, {}), **values}
    path = folder / "recipe.toml"
    path.write_text(dumps_toml(table) + "\n")
    return path


def read_metrics(dump_dir: Path, split: str = "train") -> list[dict]:
    lines = (dump_dir / "metrics.jsonl").read_text().splitlines()
    return [r for r in map(json.loads, lines) if r["split"] == split]


# ---- corpora ------------------------------------------------------------------------------

def paragraphs(lo: int, hi: int) -> list[str]:
    """Paragraphs lo..hi of the bundled corpus, as documents."""
    text = CORPUS.read_text(encoding="utf-8")
    return [p for p in text.split("\n\n") if p.strip()][lo:hi]


def write_corpus(path: Path, docs: list[str], fmt: str, field: str = "text", chunk: int = 2) -> Path:
    """`docs` as a corpus of format `fmt` at `path` (+ suffix); returns what to name in a recipe."""
    import pytest

    rows = [{"id": i, field: t} for i, t in enumerate(docs)]
    lines = "".join(json.dumps(r, ensure_ascii=i % 2 == 0) + "\n" for i, r in enumerate(rows)).encode()
    if fmt == "jsonl":
        out = path.with_suffix(".jsonl")
        out.write_bytes(lines + b"\n")  # a trailing blank line is no document
    elif fmt == "jsonl.gz":
        out = path.with_suffix(".jsonl.gz")
        out.write_bytes(gzip.compress(lines))
    elif fmt == "jsonl.zst":
        zstandard = pytest.importorskip("zstandard")
        out = path.with_suffix(".jsonl.zst")
        out.write_bytes(zstandard.ZstdCompressor().compress(lines))
    elif fmt == "parquet":
        pa = pytest.importorskip("pyarrow")
        import pyarrow.parquet as pq

        out = path.with_suffix(".parquet")
        pq.write_table(pa.table({"id": list(range(len(docs))), field: docs}), out, row_group_size=chunk)
    elif fmt in ("arrow_file", "arrow_stream"):
        pa = pytest.importorskip("pyarrow")
        out = path.with_suffix(".arrow")
        table = pa.table({field: docs, "id": list(range(len(docs)))})
        new = pa.ipc.new_file if fmt == "arrow_file" else pa.ipc.new_stream
        with new(str(out), table.schema) as writer:
            writer.write_table(table, max_chunksize=chunk)
    elif fmt == "datasets":
        datasets = pytest.importorskip("datasets")
        out = path.with_suffix("")
        datasets.Dataset.from_dict({field: docs, "id": list(range(len(docs)))}).save_to_disk(
            str(out), max_shard_size="1KB")
    elif fmt == "raw":
        out = path.with_suffix("")
        out.mkdir()
        for i, t in enumerate(docs):
            (out / f"{i:04d}.txt").write_text(t, encoding="utf-8")
    else:
        raise ValueError(fmt)
    return out


# ---- checkpoint damage --------------------------------------------------------------------

class Payload:
    """A pickle that runs `touch MARKER` when unpickled."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def flip_bytes(path, at=None, n=64):
    """Overwrite `n` bytes of the file at `path` (from its middle by default) with random ones."""
    data = bytearray(path.read_bytes())
    at = len(data) // 2 if at is None else at
    data[at:at + n] = os.urandom(min(n, len(data) - at))
    path.write_bytes(bytes(data))


# ---- generation ---------------------------------------------------------------------------

TINY_ENTROPY = {"type": "transformer", "dim": 32, "n_layers": 2, "n_heads": 2, "window": 16}


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


# The cache tests' patchers (infer/test_generate_cache.py, and the speculative and compiled
# decoding tests), with prompts ending on every patch phase.
PROMPTS = ["a", "ab", "abc", "abcd", "abcde", "x  y z. ", "The cat sat."]
PATCHERS = {
    "entropy": {"type": "entropy", "threshold": 5.47, "model": TINY_ENTROPY, "max_patch_length": 4},
    "entropy_monotonic": {"type": "entropy", "rule": "monotonic", "relative_threshold": 0.05, "model": TINY_ENTROPY},
    "static": {"type": "static", "stride": 3},
    "space": {"type": "space", "max_patch_length": 5},
    "byte": {"type": "byte"},
    "bpe": {"type": "bpe", "vocab_size": 300},
}


def model_with(patcher: dict, latent: dict | None = None, seed: int = 0):
    """The generation tests' random BLT with windows shorter than the prompts (caches wrap)."""
    return random_blt(patcher, seed, latent=latent, ngram_sizes=(2, 4), encoder_window=5, decoder_window=7)


# ---- Hugging Face -------------------------------------------------------------------------

def hf_config(variant: str):
    """A small transformers BltConfig; callers skip without transformers
    (`pytest.importorskip("transformers")`)."""
    from transformers import BltConfig

    enc = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2, intermediate_size=48)
    dec = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=40)
    glob = dict(hidden_size=48, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2, intermediate_size=80)
    pat = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64, sliding_window=5)
    top = dict(vocab_size=260, cross_attn_k=2, local_attention_window_len=6, encoder_hash_byte_group_size=[3, 4, 5],
               encoder_hash_byte_group_vocab=101, encoder_hash_byte_group_nb_functions=1, max_patch_length=None)
    if variant == "enc_last_dec_all":
        enc["cross_attn_all_layers"], dec["cross_attn_all_layers"] = False, True
    elif variant == "enc_all_dec_first":
        # k * encoder dim == global dim: no token projection; two hash functions; no window.
        enc.update(hidden_size=16, intermediate_size=32, cross_attn_all_layers=True)
        dec.update(hidden_size=16, cross_attn_all_layers=False)
        top.update(cross_attn_k=3, encoder_hash_byte_group_size=[2, 3], encoder_hash_byte_group_nb_functions=2,
                   local_attention_window_len=None)
    elif variant == "k1_all_all":
        enc["cross_attn_all_layers"], dec["cross_attn_all_layers"] = True, True
        top.update(cross_attn_k=1, encoder_hash_byte_group_size=[3, 4, 5, 6, 7, 8], encoder_hash_byte_group_nb_functions=3)
        pat.update(num_key_value_heads=2, sliding_window=None)
    else:
        raise ValueError(variant)
    for sub in (enc, dec):
        sub.update(cross_attn_k=top["cross_attn_k"], hidden_size_global=glob["hidden_size"])
    return BltConfig(patcher_config=pat, encoder_config=enc, decoder_config=dec, global_config=glob, **top)


def random_hf(variant: str, seed: int = 0):
    """A transformers BltForCausalLM of `hf_config(variant)`, every parameter normal(std 0.1)."""
    import torch
    from transformers import BltForCausalLM

    torch.manual_seed(seed)
    model = BltForCausalLM(hf_config(variant)).eval()
    with torch.no_grad():
        for p in model.parameters():
            torch.nn.init.normal_(p, std=0.1)
    return model


def save_tiny_hf(folder: Path, seed: int = 0, **save_kwargs) -> Path:
    """A tiny random Hugging Face BltForCausalLM saved with save_pretrained (what the released
    BLT folders are), for tests that start runs from pretrained weights. Random weights
    (std 0.1) and an entropy threshold at the median entropy of random bytes, so realtime
    patching cuts mixed, row-dependent patches."""
    import torch

    hf = random_hf("enc_last_dec_all", seed)
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(4, 260, (4, 32), generator=g)
    with torch.no_grad():
        ent, _, _ = hf.model.patcher(ids, patch_size=4, threshold=0.0)
    hf.config.patching_threshold = float(ent.median())
    hf.save_pretrained(folder, **save_kwargs)
    return folder


def hf_logits(folder: Path, ids):
    """Logits of the transformers BltForCausalLM saved in `folder` (no cache)."""
    import torch
    from transformers import BltForCausalLM

    model = BltForCausalLM.from_pretrained(folder).eval()
    with torch.no_grad():
        return model(ids, use_cache=False).logits


def random_ids(B: int = 2, T: int = 48, seed: int = 3):
    """B rows of T random byte ids, BOS first."""
    import torch

    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(4, 260, (B, T), generator=g)
    ids[:, 0] = 1
    return ids


# -- byteifying (issue 23): a tiny subword source, as a user's save_pretrained folder -------------

SOURCE_TEXT = ("First Citizen:\nBefore we proceed any further, hear me speak.\n\nAll:\nSpeak, speak.\n"
               "Second Citizen:\nWe are accounted poor citizens, the patricians good.\n") * 20


def save_source_folder(folder, kind: str = "llama", vocab_size: int = 300, hidden: int = 64, layers: int = 2,
                       seed: int = 0):
    """A random Llama (or Qwen2: q/k/v biases) causal LM with a byte-level BPE tokenizer
    trained on SOURCE_TEXT, saved as HF folders are (config.json, model.safetensors,
    tokenizer.json). -> (folder, the HF model)."""
    import transformers
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                  special_tokens=["<|endoftext|>"], show_progress=False)
    tok.train_from_iterator([SOURCE_TEXT], trainer)
    fast = transformers.PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|endoftext|>",
                                                bos_token="<|endoftext|>")
    torch.manual_seed(seed)
    sizes = dict(vocab_size=tok.get_vocab_size(), hidden_size=hidden, intermediate_size=96,
                 num_hidden_layers=layers, num_attention_heads=4, num_key_value_heads=2,
                 max_position_embeddings=256, rope_theta=10000.0, tie_word_embeddings=False)
    config = (transformers.Qwen2Config(**sizes, use_sliding_window=False) if kind == "qwen2"
              else transformers.LlamaConfig(**sizes))
    model = transformers.AutoModelForCausalLM.from_config(config).eval()
    folder.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(folder)
    fast.save_pretrained(folder)
    return folder, model
