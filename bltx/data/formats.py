"""Document sources by file type: registered `data_source` readers and the common shape of
a file that holds many documents.

    files = open_documents(["web/*.jsonl.gz", "books.parquet"], base, text_field="text")

A reader is a class registered with `@register("data_source", NAME)` that fulfils the
DataSource contract (bltx/protocols.py): `suffixes` (the file endings it claims when a
source's `type` is "auto") and `open(path, text_field, cache_root) -> DocumentFile`. Built in: `raw` (every byte of the file is
one document: today's behaviour, and the reader of any file no other reader claims),
`jsonl` (bltx/data/jsonl.py), `parquet` and `arrow` (bltx/data/columnar.py). A `datasets`
`save_to_disk` folder named as a path reads as its Arrow files.

A file of many documents (`IndexedFile`) knows each document's length from its index
(bltx/data/doc_index.py) and reads one document's bytes on demand; the id stream
(bltx/data/stream.py) lays documents out as [BOS] bytes EOS.
"""

from __future__ import annotations

import json
import threading
from collections import OrderedDict
from pathlib import Path

import numpy as np

from bltx.data.doc_index import DocIndex, build_index, cache_root
from bltx.data.sources import open_bytes, open_sources
from bltx.errors import ConfigError, DataError
from bltx.protocols import check
from bltx.registry import get_registry, register

# Whole documents kept decoded per file (consecutive windows of one long document).
DOC_CACHE = 4


class LRU:
    """A small thread-safe least-recently-used map, bounded by entries and by bytes."""

    def __init__(self, max_items: int, max_bytes: int = 0):
        self.max_items = max_items
        self.max_bytes = max_bytes
        self.items: OrderedDict = OrderedDict()
        self.sizes: dict = {}
        self.lock = threading.Lock()

    def get(self, key, make):
        with self.lock:
            if key in self.items:
                self.items.move_to_end(key)
                return self.items[key]
        value = make()
        size = int(value.nbytes) if self.max_bytes else 0  # a byte-bounded cache holds sized values
        with self.lock:
            self.items[key] = value
            self.sizes[key] = size
            while len(self.items) > 1 and (
                len(self.items) > self.max_items or (self.max_bytes and sum(self.sizes.values()) > self.max_bytes)
            ):
                old, _ = self.items.popitem(last=False)
                del self.sizes[old]
        return value


class IndexedFile:
    """Many documents in one file, read through its index. Subclasses define `load(row)`:
    the whole text of the document whose index row is `row`, as uint8."""

    kind = "?"

    def __init__(self, path: Path, index: DocIndex):
        self.path = path
        self.index = index
        self.num_docs = index.docs
        self.docs = LRU(DOC_CACHE)

    def __len__(self) -> int:  # text bytes in all (what a fingerprint records)
        return self.index.bytes

    def read_doc(self, doc: int, lo: int, hi: int) -> np.ndarray:
        row = tuple(int(v) for v in self.index.rows[doc])
        return self.docs.get(doc, lambda: self.load(row))[lo:hi]

    def load(self, row: tuple[int, int, int, int]) -> np.ndarray:
        raise NotImplementedError


class IndexedSource:
    """A reader of many documents per file, through an index. Subclasses set `kind`,
    `suffixes`, `build(path, text_field, writer)` (the index pass) and `file` (the
    IndexedFile class, made with `(path, index, text_field)`)."""

    kind = ""
    suffixes: tuple[str, ...] = ()
    file = IndexedFile

    @staticmethod
    def build(path: Path, text_field: str, writer) -> None:
        raise NotImplementedError

    @classmethod
    def open(cls, path: Path, text_field: str, cache: Path) -> IndexedFile:
        folder = build_index(cache, path, cls.kind, text_field, lambda writer: cls.build(path, text_field, writer))
        return cls.file(path, DocIndex(folder), text_field)


@register("data_source", "raw")
class RawSource:
    """Every byte of the file, text or binary, is one document (no decoding)."""

    suffixes: tuple[str, ...] = ()

    @staticmethod
    def open(path: Path, text_field: str, cache: Path):
        return open_bytes(path)


def readers() -> dict[str, type]:
    """Every registered reader by name, each checked against the DataSource contract
    (bltx/protocols.py), so a plugin reader that lacks `suffixes` or `open` fails in one line."""
    registry = get_registry("data_source")
    return {kind: check(registry.get(kind), "data_source", f"data_source '{kind}'") for kind in registry.names()}


def detect(path: Path, known: dict[str, type] | None = None) -> str:
    """The registered reader that claims `path`'s ending (longest match), else "raw"."""
    name = path.name.lower()
    best, best_len = "raw", 0
    for kind, reader in (known or readers()).items():
        for suffix in reader.suffixes:
            if name.endswith(suffix) and len(suffix) > best_len:
                best, best_len = kind, len(suffix)
    return best


def open_documents(patterns: list[str], base: Path | None = None, text_field: str = "text",
                   kind: str = "auto", cache_dir: str = "") -> list:
    """Expand `patterns` and open every file with its reader (by file type when `kind` is
    "auto"). Files without any document found through a glob or folder are skipped."""
    known = readers()
    if kind != "auto" and kind not in known:
        raise ConfigError(f"data source type '{kind}' is not registered; registered: auto, {', '.join(known)}")
    root: list[Path] = []

    def opener(path: Path):
        reader = known[detect(path, known) if kind == "auto" else kind]
        if reader is RawSource:
            return reader.open(path, text_field, None)
        if not root:
            root.append(cache_root(cache_dir))
        return reader.open(path, text_field, root[0])

    return open_sources(_with_datasets_folders(patterns, base), base, opener=opener)


def datasets_folder(path: Path) -> list[Path]:
    """The Arrow files of a `datasets` `save_to_disk` folder, in order ([] for any other
    folder). A DatasetDict folder gives its `train` split."""
    if (path / "dataset_dict.json").is_file():
        if not (path / "train").is_dir():
            raise DataError(f"{path} is a DatasetDict without a 'train' split; name the split's folder in the path")
        path = path / "train"
    state = path / "state.json"
    if not state.is_file():
        if (path / "dataset_info.json").is_file():  # save_to_disk writes both: one is lost
            raise DataError(f"{path} is a datasets save_to_disk folder without its state.json (which lists "
                            f"its Arrow files in order); restore it, or name the .arrow files in data.paths")
        return []
    try:
        names = [f["filename"] for f in json.loads(state.read_text())["_data_files"]]
    except (ValueError, KeyError, TypeError):
        raise DataError(f"{state} is not a datasets state file (no _data_files list)") from None
    return [path / name for name in names]


def _with_datasets_folders(patterns: list[str], base: Path | None) -> list[str]:
    """A pattern naming a `datasets` folder (found like any path: the current folder first,
    then `base`) becomes its Arrow files; other patterns stay."""
    out = []
    for pattern in patterns:
        where = Path(pattern).expanduser()
        candidates = [where] if where.is_absolute() else [Path.cwd() / where] + ([base / where] if base else [])
        folder = next((c for c in candidates if c.is_dir()), None)
        files = datasets_folder(folder) if folder is not None else []
        out.extend(str(f) for f in files) if files else out.append(pattern)
    return out


def check_text_type(path: Path, field: str, type_name: str, is_text: bool) -> None:
    if not is_text:
        raise DataError(f"data file {path}: column '{field}' is {type_name}, not text (string or binary); "
                        f"set data.text_field (or the source's text_field) to a text column")


def missing_field(path: Path, where: str, field: str, names) -> DataError:
    shown = ", ".join(sorted(map(str, names))[:12]) or "none"
    return DataError(f"data file {path}{where}: no field '{field}' (fields: {shown}); "
                     f"set data.text_field (or the source's text_field)")
