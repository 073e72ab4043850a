"""`job.task = "show_data"`: the first training windows as text (never the JSON or Parquet
around it), document boundaries marked, non-printable bytes escaped, and the mixture's
realised proportions."""

from __future__ import annotations

import numpy as np
import pytest

from bltx.config import load_recipe
from bltx.registry import get_registry
from bltx.tasks.show_data import render
from helpers import ROOT, paragraphs, run_cli, write_corpus

pytest.importorskip("pyarrow")


def test_render_marks_boundaries_and_escapes_bytes():
    ids = [1] + [b + 4 for b in "héllo\n\x07".encode()] + [0xFF + 4, 2, 1]
    assert render(np.array(ids)) == "<|bos|>héllo\n\\x07\\xff<|eos|><|bos|>"


def test_show_data_prints_the_text_of_a_parquet_file(tmp_path, capsys):
    corpus = write_corpus(tmp_path / "books", paragraphs(0, 120), "parquet", chunk=20)
    recipe = load_recipe(ROOT / "recipes" / "tiny.toml", [
        f'data.paths=["{corpus}"]', f"data.cache_dir={tmp_path / 'cache'}", "data.batch_size=2",
        f"job.dump_dir={tmp_path / 'run'}"])
    assert get_registry("task").get("show_data")(recipe) == 0
    out = capsys.readouterr().out
    assert "1 file(s), parquet, 120 documents" in out and "<|eos|><|bos|>" in out
    assert "PAR1" not in out and "mixture: one source ('books')" in out


def test_cli_shows_a_jsonl_and_parquet_mixture(tmp_path):
    web = write_corpus(tmp_path / "web", paragraphs(0, 200), "jsonl")
    books = write_corpus(tmp_path / "books", paragraphs(200, 400), "parquet", field="content", chunk=50)
    sources = (f'data.sources=[{{path="{web}", weight=0.75}}, '
               f'{{path="{books}", weight=0.25, text_field="content"}}]')
    proc = run_cli("recipes/tiny.toml", "--set", sources, "--set", "job.task=show_data",
                   "--set", f"data.cache_dir={tmp_path / 'cache'}", "--set", f"job.dump_dir={tmp_path / 'run'}",
                   timeout=120)
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert "source 'web' (weight 0.75" in out and "source 'books' (weight 0.25, text field 'content')" in out
    assert '{"text"' not in out and '"id"' not in out  # the documents' text, not their JSON
    assert "--- window" in out and "<|bos|>" in out
    line = next(s for s in out.splitlines() if s.startswith("mixture over 400 batches"))
    web_share = float(line.split("web ")[1].split()[0])
    assert abs(web_share - 0.75) < 0.03, line
