"""Byte sources, the EOS-joined id stream, splits and windows, and their edge cases."""

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from bltx.bytes import BOS_ID, EOS_ID, OFFSET
from bltx.data import IdStream, Windows, build_data, expand_paths, open_sources, split_stream
from bltx.data.sources import ByteFile, resolve_bundled
from bltx.errors import DataError
from bltx.sections import DataConfig
from helpers import run_cli


def reference_ids(docs: list[bytes], bos: bool) -> np.ndarray:
    out = []
    for d in docs:
        out += ([BOS_ID] if bos else []) + [b + OFFSET for b in d] + [EOS_ID]
    return np.array(out, dtype=np.int64)


def mem_docs(docs: list[bytes]) -> list[ByteFile]:
    from pathlib import Path

    return [ByteFile(Path(f"doc{i}"), np.frombuffer(d, dtype=np.uint8)) for i, d in enumerate(docs)]


@given(
    docs=st.lists(st.binary(min_size=0, max_size=40), min_size=1, max_size=5),
    bos=st.booleans(),
    data=st.data(),
)
def test_stream_reads_equal_the_materialised_concatenation(docs, bos, data):
    stream = IdStream(mem_docs(docs), add_bos=bos)
    ref = reference_ids(docs, bos)
    assert len(stream) == len(ref)
    start = data.draw(st.integers(0, len(ref) - 1))
    length = data.draw(st.integers(0, len(ref) - start))
    np.testing.assert_array_equal(stream.read(start, length), ref[start : start + length])


def test_files_are_joined_with_eos_and_split_at_the_tail(tmp_path):
    (tmp_path / "a.txt").write_bytes(b"hello")
    (tmp_path / "b.txt").write_bytes(b"world!")
    docs = open_sources([str(tmp_path / "*.txt")])
    assert [d.path.name for d in docs] == ["a.txt", "b.txt"]  # sorted, deterministic
    stream = IdStream(docs, add_bos=True)
    np.testing.assert_array_equal(stream.read(0, len(stream)), reference_ids([b"hello", b"world!"], True))
    train, val = split_stream(stream, 0.25)
    assert (train.start, train.end, val.start, val.end) == (0, 11, 11, 15)


def test_non_utf8_and_binary_bytes_map_exactly(tmp_path):
    raw = bytes(range(256)) + b"\xff\xfe\x00\xc3\x28"
    (tmp_path / "bin.dat").write_bytes(raw)
    stream = IdStream(open_sources([str(tmp_path / "bin.dat")]), add_bos=False)
    ids = stream.read(0, len(stream))
    assert list(ids[:-1]) == [b + OFFSET for b in raw] and ids[-1] == EOS_ID


def test_windows_are_shifted_pairs(tmp_path):
    (tmp_path / "t.txt").write_bytes(bytes(range(100)))
    data = build_data(DataConfig(paths=[str(tmp_path / "t.txt")], seq_len=8, batch_size=2, validation_fraction=0.0))
    assert data.validation is None
    assert len(data.train) == (102 - 1) // 8
    batch = data.train.batch([0, 3])
    assert batch["ids"].shape == batch["targets"].shape == (2, 8)
    assert batch["ids"][0, 0] == BOS_ID
    assert (batch["ids"][:, 1:] == batch["targets"][:, :-1]).all()
    assert batch["ids"][1, 0] == 3 * 8 - 1 + OFFSET  # window 3 starts at stream position 24


def test_bundled_corpus_needs_no_download():
    path = resolve_bundled("tiny_shakespeare")
    assert path.is_file() and 200_000 < path.stat().st_size < 600_000
    assert expand_paths(["bltx:tiny_shakespeare"]) == [path]
    with pytest.raises(DataError, match="bundled: bltx:tiny_shakespeare"):
        expand_paths(["bltx:nope"])


def test_missing_path_is_a_clear_error(tmp_path):
    with pytest.raises(DataError, match="nothing matches 'missing.txt'"):
        open_sources(["missing.txt"], base=tmp_path)


def test_empty_file_named_explicitly_is_an_error(tmp_path):
    (tmp_path / "empty.txt").write_bytes(b"")
    with pytest.raises(DataError, match="empty.txt is empty"):
        open_sources([str(tmp_path / "empty.txt")])


def test_empty_files_in_a_glob_are_skipped_unless_all_are_empty(tmp_path):
    (tmp_path / "a.txt").write_bytes(b"")
    (tmp_path / "b.txt").write_bytes(b"xyz")
    assert [d.path.name for d in open_sources([str(tmp_path / "*.txt")])] == ["b.txt"]
    (tmp_path / "b.txt").write_bytes(b"")
    with pytest.raises(DataError, match="only empty files"):
        open_sources([str(tmp_path / "*.txt")])


def test_file_shorter_than_one_window_is_a_clear_error(tmp_path):
    (tmp_path / "short.txt").write_bytes(b"tiny")
    cfg = DataConfig(paths=[str(tmp_path / "short.txt")], seq_len=64, validation_fraction=0.0)
    with pytest.raises(DataError, match="fewer than one window of data.seq_len"):
        build_data(cfg)


def test_validation_split_shorter_than_one_window_is_a_clear_error(tmp_path):
    (tmp_path / "t.txt").write_bytes(b"x" * 200)
    cfg = DataConfig(paths=[str(tmp_path / "t.txt")], seq_len=64, validation_fraction=0.1)
    with pytest.raises(DataError, match="validation split .* raise data.validation_fraction"):
        build_data(cfg)


@pytest.mark.parametrize(
    "setup, paths, message",
    [
        (None, '["nowhere/missing.txt"]', "error: data.paths: nothing matches 'nowhere/missing.txt'"),
        ("empty", '["EMPTY"]', "is empty; remove it from data.paths"),
        ("short", '["SHORT"]', "fewer than one window"),
    ],
)
def test_data_errors_exit_2_with_one_line(tmp_path, setup, paths, message):
    (tmp_path / "empty.txt").write_bytes(b"")
    (tmp_path / "short.txt").write_bytes(b"\xff\x00 short")
    paths = paths.replace("EMPTY", str(tmp_path / "empty.txt")).replace("SHORT", str(tmp_path / "short.txt"))
    recipe = tmp_path / "r.toml"
    recipe.write_text(
        f'[job]\ndump_dir = "{tmp_path / "run"}"\n[data]\npaths = {paths}\nseq_len = 64\n'
        '[model]\ntype = "entropy_lm"\n[model.entropy_model]\ntype = "transformer"\n'
        "dim = 16\nn_layers = 1\nn_heads = 2\n"
    )
    proc = run_cli(str(recipe), timeout=120)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], proc.stderr
    assert "Traceback" not in proc.stderr
