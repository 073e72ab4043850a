"""Document sources by file type: JSONL (plain, .gz, .zst), Parquet, Arrow files and
`datasets` folders read to exactly the byte stream of the same documents as raw files;
text fields per source; document indexes built once; bad records are one clear line.
The documents are written in each format by `helpers.write_corpus`."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import numpy as np
import pytest

from bltx.data import IdStream, build_data
from bltx.data.formats import detect, open_documents
from bltx.errors import DataError
from bltx.sections import DataConfig, SourceConfig
from helpers import run_cli, write_corpus

pa = pytest.importorskip("pyarrow")
import pyarrow.parquet as pq  # noqa: E402

FORMATS = ["jsonl", "jsonl.gz", "jsonl.zst", "parquet", "arrow_file", "arrow_stream", "datasets"]
DOCS = [
    "hello world",
    "second document\nwith a newline and a tab\t",
    "ünïcödé ✓ 🎉 — ∑",
    "",  # an empty text is no document, in every format
    'quotes "and" {"text": "braces"} \\ backslash',
    "x" * 700,
    "last one",
]


@pytest.fixture
def cache(tmp_path, monkeypatch) -> str:
    return str(tmp_path / "cache")


def stream_of(target: Path, cache: str, field: str = "text") -> np.ndarray:
    stream = IdStream(open_documents([str(target)], text_field=field, cache_dir=cache))
    return stream.read(0, len(stream))


@pytest.mark.parametrize("fmt", FORMATS)
def test_each_format_reads_the_same_byte_stream_as_raw_files(tmp_path, cache, fmt):
    reference = stream_of(write_corpus(tmp_path / "ref", DOCS, "raw"), cache)
    target = write_corpus(tmp_path / "corpus", DOCS, fmt)
    ids = stream_of(target, cache)
    np.testing.assert_array_equal(ids, reference)
    # Reads at random offsets (across documents, chunks and files) agree too.
    stream = IdStream(open_documents([str(target)], cache_dir=cache))
    rng = np.random.default_rng(0)
    for _ in range(50):
        start = int(rng.integers(0, len(ids)))
        length = int(rng.integers(0, len(ids) - start + 1))
        np.testing.assert_array_equal(stream.read(start, length), ids[start : start + length])


def test_file_types_choose_their_reader():
    names = {"a.jsonl": "jsonl", "a.JSON": "jsonl", "a.jsonl.gz": "jsonl", "b.json.zst": "jsonl",
             "c.parquet": "parquet", "d.arrow": "arrow", "e.txt": "raw", "f.gz": "raw", "g": "raw"}
    assert {n: detect(Path(n)) for n in names} == names


def test_a_reader_that_breaks_the_data_source_contract_fails_in_one_line(tmp_path):
    from bltx.errors import ConfigError
    from bltx.registry import Registry, register

    @register("data_source", "test_no_suffixes")
    class NoSuffixes:  # open() but no `suffixes` (bltx/protocols.py DataSource)
        @staticmethod
        def open(path, text_field, cache):
            raise AssertionError("never opened: the contract is checked first")

    (tmp_path / "a.txt").write_bytes(b"text")
    try:
        with pytest.raises(ConfigError, match=r"data_source 'test_no_suffixes': NoSuffixes .*missing: suffixes$"):
            open_documents([str(tmp_path / "a.txt")])
    finally:
        Registry.for_kind("data_source")._entries.pop("test_no_suffixes")


def test_text_field_per_source_and_explicit_type(tmp_path, cache):
    a = write_corpus(tmp_path / "a", DOCS[:3], "jsonl", field="content")
    b = write_corpus(tmp_path / "b", DOCS[4:], "parquet")
    odd = tmp_path / "c.data"
    odd.write_text(json.dumps({"text": "typed by hand"}) + "\n")
    cfg = DataConfig(sources=[SourceConfig(path=str(a), text_field="content"), SourceConfig(path=str(b)),
                              SourceConfig(path=str(odd), type="jsonl")],
                     seq_len=8, validation_fraction=0.0, cache_dir=cache)
    data = build_data(cfg)
    raw = data.stream.read(0, len(data.stream))
    text = bytes(int(i) - 4 for i in raw if i >= 4).decode()
    assert text == "".join(DOCS[:3] + DOCS[4:]) + "typed by hand"
    assert data.names == ["a", "b", "c.data"]


def test_indexes_are_built_once_and_rebuilt_for_a_changed_file(tmp_path, cache):
    target = write_corpus(tmp_path / "c", DOCS, "jsonl")
    stream_of(target, cache)
    stream_of(target, cache)
    assert len([p for p in Path(cache).iterdir() if p.is_dir()]) == 1
    target.write_text(json.dumps({"text": "new"}) + "\n")
    assert bytes(int(i) - 4 for i in stream_of(target, cache) if i >= 4) == b"new"
    assert len([p for p in Path(cache).iterdir() if p.is_dir()]) == 2


@pytest.mark.parametrize("content, message", [
    ('{"text": "ok"}\n{"text": "broken\n', r"b.jsonl line 2: not valid JSON"),
    ('{"text": "ok"}\n\n{"body": "x"}\n', r"b.jsonl line 3: no field 'text' \(fields: body\)"),
    ('{"text": 3}\n', r"b.jsonl line 1: field 'text' is int, not a string"),
    ('["a list"]\n', r"b.jsonl line 1: a JSON list"),
    ('{"text": ""}\n', r"b.jsonl is empty"),
])
def test_bad_json_lines_name_the_file_and_line(tmp_path, cache, content, message):
    (tmp_path / "b.jsonl").write_text(content)
    with pytest.raises(DataError, match=message):
        open_documents([str(tmp_path / "b.jsonl")], cache_dir=cache)


def test_bad_columns_and_rows_name_the_file(tmp_path, cache):
    pq.write_table(pa.table({"body": ["a"]}), tmp_path / "a.parquet")
    with pytest.raises(DataError, match=r"a.parquet: no field 'text' \(fields: body\)"):
        open_documents([str(tmp_path / "a.parquet")], cache_dir=cache)
    pq.write_table(pa.table({"text": [1, 2]}), tmp_path / "b.parquet")
    with pytest.raises(DataError, match="column 'text' is int64, not text"):
        open_documents([str(tmp_path / "b.parquet")], cache_dir=cache)
    pq.write_table(pa.table({"text": ["a", "b", None]}), tmp_path / "c.parquet", row_group_size=2)
    with pytest.raises(DataError, match=r"c.parquet row 2 \(counting from 0\): the text is null"):
        open_documents([str(tmp_path / "c.parquet")], cache_dir=cache)
    (tmp_path / "d.arrow").write_bytes(b"not arrow at all")
    with pytest.raises(DataError, match="d.arrow is not a readable Arrow file"):
        open_documents([str(tmp_path / "d.arrow")], cache_dir=cache)
    (tmp_path / "e.jsonl.gz").write_bytes(gzip.compress(b'{"text": "a"}\n' * 50)[:30])
    with pytest.raises(DataError, match="e.jsonl.gz: cannot be decompressed"):
        open_documents([str(tmp_path / "e.jsonl.gz")], cache_dir=cache)


def test_cli_broken_jsonl_line_is_one_line_and_exit_2(tmp_path):
    corpus = tmp_path / "corpus.jsonl"
    corpus.write_text('{"text": "fine"}\n' * 3 + '{"text": oops}\n')
    proc = run_cli("recipes/tiny.toml", "--set", f'data.paths=["{corpus}"]', "--set", f"job.dump_dir={tmp_path}/run",
                   "--set", f"data.cache_dir={tmp_path}/cache", "--set", "job.task=show_data", timeout=120)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: data file ") and "corpus.jsonl line 4: not valid JSON" in lines[0]
    assert not (tmp_path / "run").exists()  # nothing written
