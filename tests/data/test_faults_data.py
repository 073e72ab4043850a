"""Data faults: a corpus of many files holds no descriptor per file, a file changed under a
run is a clear error (not SIGBUS), FIFOs and other non-regular files are refused, and
`bltx:NAME` cannot leave the bundled folder. Each user-facing case is one stderr line,
exit 2, through the CLI's entry point."""

import os

import pytest

from bltx.data import IdStream, open_sources
from bltx.data.sources import MAX_OPEN_FILES
from bltx.errors import CheckpointError, DataError
from bltx.run import main
from bltx.checkpoint import load_model_state
from helpers import one_line, write_recipe


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def test_many_files_keep_few_descriptors_open(tmp_path):
    folder = tmp_path / "docs"
    folder.mkdir()
    for i in range(MAX_OPEN_FILES * 3):
        (folder / f"{i:04d}.txt").write_bytes(bytes([65 + i % 26]) * 10)
    before = open_fds()
    stream = IdStream(open_sources([str(folder)]))
    assert open_fds() == before  # opening holds nothing
    ids = stream.read(0, len(stream))
    assert open_fds() <= before + MAX_OPEN_FILES
    assert len(ids) == MAX_OPEN_FILES * 3 * 12 and ids[1] == 65 + 4


@pytest.mark.parametrize("change", ["truncate", "rewrite_same_size"])
def test_a_file_changed_under_the_run_is_a_clear_error(tmp_path, change):
    path = tmp_path / "a.txt"
    path.write_bytes(b"x" * 1000)
    stream = IdStream(open_sources([str(path)]))
    stream.read(0, 100)
    if change == "truncate":
        os.truncate(path, 10)
    else:
        path.write_bytes(b"y" * 1000)
        os.utime(path, ns=(1, 1))
    with pytest.raises(DataError, match="changed during the run"):
        stream.read(500, 100)


def test_non_regular_files_in_data_paths_are_refused(tmp_path):
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    with pytest.raises(DataError, match="pipe is not a regular file"):
        open_sources([str(fifo)])
    (tmp_path / "a.txt").write_text("hello")
    with pytest.raises(DataError, match="pipe is not a regular file"):
        open_sources([str(tmp_path)])  # found by walking a folder, too


@pytest.mark.parametrize("name", ["../../etc/passwd", "/etc/passwd", "..", "sub/file"])
def test_bundled_names_cannot_leave_the_bundled_folder(name):
    with pytest.raises(DataError, match="not a bundled file name"):
        open_sources([f"bltx:{name}"])
    with pytest.raises(CheckpointError, match="not a bundled file name"):
        load_model_state(f"bltx:{name}")


def test_cli_one_line_for_a_fifo_in_data_paths(tmp_path, capsys):
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    recipe = write_recipe(tmp_path, data={"paths": [str(fifo)], "seq_len": 64, "batch_size": 4})
    assert main([str(recipe)]) == 2
    assert "is not a regular file" in one_line(capsys)


def test_cli_one_line_when_the_corpus_is_truncated_mid_run(tmp_path, capsys, monkeypatch):
    from bltx.train.trainer import Trainer

    corpus = tmp_path / "corpus.txt"
    corpus.write_bytes(bytes(range(32, 127)) * 200)
    recipe = write_recipe(tmp_path, data={"paths": [str(corpus)], "seq_len": 64, "batch_size": 4,
                                          "validation_fraction": 0.0},
                          training={"steps": 12}, checkpoint={"interval": 2})
    real_step = Trainer.train_step

    def step_then_truncate(self):
        out = real_step(self)
        if self.step == 3:
            os.truncate(corpus, 100)
        return out

    monkeypatch.setattr(Trainer, "train_step", step_then_truncate)
    # Batches read ahead (data.prefetch) before the truncation are whole; a later read fails.
    assert main([str(recipe)]) == 2
    assert "corpus.txt changed during the run" in one_line(capsys)
    assert list((tmp_path / "run" / "checkpoints").glob("step_*/COMPLETE"))  # nothing saved is lost


# ---- issue 25, item 6: indexes and stored entropies are read like data files ----------------


def jsonl_recipe(tmp_path, **training):
    corpus = tmp_path / "docs.jsonl"
    corpus.write_text("".join('{"text": "%s"}\n' % ("document %d " % i * 20) for i in range(120)))
    recipe = write_recipe(tmp_path, data={"paths": [str(corpus)], "cache_dir": str(tmp_path / "cache"),
                                          "validation_fraction": 0.0},
                          training={"steps": 4, **training}, checkpoint={"interval": 0})
    return recipe, tmp_path / "cache"


def index_of(cache):
    (folder,) = [p for p in cache.iterdir() if p.is_dir()]
    return folder


@pytest.mark.parametrize("damage", ["garbled_meta", "meta_a_fifo", "truncated_rows", "rows_a_fifo"])
def test_a_damaged_document_index_is_rebuilt_with_a_notice(tmp_path, capsys, damage):
    recipe, cache = jsonl_recipe(tmp_path)
    assert main([str(recipe), "--set", "training.steps=1"]) == 0
    folder = index_of(cache)
    rows = (folder / "docs.bin").read_bytes()
    if damage == "garbled_meta":
        (folder / "meta.json").write_text('{"docs": "many"')
    elif damage == "meta_a_fifo":
        (folder / "meta.json").unlink()
        os.mkfifo(folder / "meta.json")
    elif damage == "truncated_rows":
        os.truncate(folder / "docs.bin", 40)
    else:
        (folder / "docs.bin").unlink()
        os.mkfifo(folder / "docs.bin")
    capsys.readouterr()
    assert main([str(recipe), "--set", "checkpoint.auto_resume=false", "--set", "training.steps=1"]) == 0
    assert "rebuilding the index of" in capsys.readouterr().err
    assert (index_of(cache) / "docs.bin").read_bytes() == rows


def test_a_document_index_truncated_under_a_run_cannot_bus_error(tmp_path, monkeypatch):
    from bltx.train.trainer import Trainer

    recipe, cache = jsonl_recipe(tmp_path, steps=6)
    real_step = Trainer.train_step

    def step_then_truncate(self):
        out = real_step(self)
        if self.step == 2:
            os.truncate(index_of(cache) / "docs.bin", 8)
        return out

    monkeypatch.setattr(Trainer, "train_step", step_then_truncate)
    # Memory-mapped, the next row read past the new end was SIGBUS (exit 135); read into
    # memory at open, the run goes on with the index it checked.
    assert main([str(recipe)]) == 0


def entropies_recipe(tmp_path):
    from bltx.data import IdStream, open_sources

    corpus = tmp_path / "c.txt"
    corpus.write_bytes(b"abc defg hij " * 200)
    n = len(IdStream(open_sources([str(corpus)])))
    stored = tmp_path / "c.npy"
    recipe = write_recipe(tmp_path, data={"paths": [str(corpus)], "entropies_path": str(stored)},
                          training={"steps": 4}, checkpoint={"interval": 0})
    return recipe, stored, n


@pytest.mark.parametrize("kind,expected", [
    ("random", "is not a .npy array file"),
    ("object", "holds a object array"),
    ("float32", "holds a float32 array"),
    ("2d", "not a 1-D float16 array"),
    ("truncated", "(truncated or extended)"),
    ("folder", "is not a regular file"),
])
def test_a_bad_entropies_file_is_one_line(tmp_path, capsys, kind, expected):
    import numpy as np

    recipe, stored, n = entropies_recipe(tmp_path)
    if kind == "random":
        stored.write_bytes(os.urandom(2 * n + 128))
    elif kind == "object":
        np.save(stored, np.array([{"x": 1}] * n, dtype=object), allow_pickle=True)
    elif kind == "float32":
        np.save(stored, np.zeros(n, dtype=np.float32))
    elif kind == "2d":
        np.save(stored, np.zeros((n, 1), dtype=np.float16))
    elif kind == "truncated":
        np.save(stored, np.zeros(n, dtype=np.float16))
        os.truncate(stored, stored.stat().st_size - 10)
    else:
        stored.mkdir()
    assert main([str(recipe)]) == 2
    line = one_line(capsys)
    assert f"data.entropies_path {stored}" in line and expected in line


def test_entropies_truncated_under_a_run_are_one_line(tmp_path, capsys, monkeypatch):
    import numpy as np

    from bltx.train.trainer import Trainer

    recipe, stored, n = entropies_recipe(tmp_path)
    np.save(stored, np.full(n, 9.0, dtype=np.float16))
    real_step = Trainer.train_step

    def step_then_truncate(self):
        out = real_step(self)
        if self.step == 1:
            os.truncate(stored, 200)
        return out

    monkeypatch.setattr(Trainer, "train_step", step_then_truncate)
    assert main([str(recipe), "--set", "training.steps=40"]) == 2
    assert "c.npy changed during the run" in one_line(capsys)


def test_training_from_stored_entropies_says_so(tmp_path, capsys):
    import numpy as np

    recipe, stored, n = entropies_recipe(tmp_path)
    np.save(stored, np.full(n, 1.0, dtype=np.float16))
    assert main([str(recipe), "--set", "training.steps=1"]) == 0
    assert f"patching from stored entropies {stored}" in capsys.readouterr().out


@pytest.mark.parametrize("keep", [0.5, 0.98])
def test_a_truncated_zst_is_named_as_truncated(tmp_path, capsys, keep):
    import json

    zstandard = pytest.importorskip("zstandard")  # an optional data extra: bltx[data]
    text = "".join(json.dumps({"text": "document %d " % i * 30}) + "\n" for i in range(300)).encode()
    packed = zstandard.ZstdCompressor().compress(text)
    path = tmp_path / "docs.jsonl.zst"
    path.write_bytes(packed[: int(len(packed) * keep)])
    recipe = write_recipe(tmp_path, data={"paths": [str(path)], "cache_dir": str(tmp_path / "cache")})
    assert main([str(recipe)]) == 2
    line = one_line(capsys)  # was "is empty" or "not valid JSON" on the last line
    assert "docs.jsonl.zst" in line and "truncated" in line


def test_a_datasets_folder_without_state_json_is_named_so(tmp_path, capsys):
    folder = tmp_path / "saved"
    folder.mkdir()
    (folder / "dataset_info.json").write_text("{}")
    (folder / "data-00000-of-00001.arrow").write_bytes(b"\0" * 64)
    recipe = write_recipe(tmp_path, data={"paths": [str(folder)], "cache_dir": str(tmp_path / "cache")})
    assert main([str(recipe)]) == 2
    line = one_line(capsys)  # was "not a readable Arrow file" about a shard
    assert "datasets save_to_disk folder without its state.json" in line
