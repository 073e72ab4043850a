"""Columnar documents: Parquet files and Arrow files (what `datasets` `save_to_disk`
writes), one document per row, its text in the column `data.text_field`.

Nothing is read whole. The index pass reads the text column one chunk at a time (a Parquet
row group, an Arrow record batch) to record each row's length and where it lives; training
then decodes the chunk a window needs and keeps the most recently used chunks (up to
`CHUNK_CACHE_BYTES`). With `data.shuffle_buffer` set, successive windows come from a few
places of the corpus, so each chunk is decoded about once per epoch.

Arrow files are read through plain reads of one record batch's bytes (not memory-mapped:
a map of a file truncated under a running job is a SIGBUS, not an error), checked against
the file's size and mtime like every other read.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from bltx.data.doc_index import DocIndex, IndexWriter
from bltx.data.formats import LRU, IndexedFile, IndexedSource, check_text_type, missing_field
from bltx.data.sources import open_bytes
from bltx.errors import DataError
from bltx.registry import register

# Decoded chunks kept in memory, all files together.
CHUNK_CACHE_BYTES = 1 << 30
_chunks = LRU(64, CHUNK_CACHE_BYTES)


def _pyarrow():
    try:
        import pyarrow
        import pyarrow.compute  # noqa: F401
        import pyarrow.ipc  # noqa: F401
        import pyarrow.parquet  # noqa: F401
    except ImportError:
        raise DataError("reading Parquet or Arrow files needs pyarrow; pip install 'bltx[data]'") from None
    return pyarrow


def _is_text(pa, tp) -> bool:
    return any(check(tp) for check in (pa.types.is_string, pa.types.is_large_string,
                                       pa.types.is_binary, pa.types.is_large_binary))


def _add_chunk(writer: IndexWriter, column, chunk: int, first_row: int, path: Path) -> None:
    """Index rows of one chunk's text column (nulls refused, empty texts skipped)."""
    pa = _pyarrow()
    if column.null_count:
        nulls = np.flatnonzero(column.is_null().to_numpy(zero_copy_only=False))
        raise DataError(f"data file {path} row {first_row + int(nulls[0])} (counting from 0): the text is null; "
                        f"drop such rows or fill them")
    lengths = pa.compute.binary_length(column).to_numpy(zero_copy_only=False).astype(np.int64)
    rows = np.flatnonzero(lengths)
    writer.add_many(lengths[rows], chunk, rows)


def _row_bytes(column, row: int) -> np.ndarray:
    return np.frombuffer(column[row].as_buffer(), dtype=np.uint8)


class ParquetFile(IndexedFile):
    kind = "parquet"

    def __init__(self, path: Path, index: DocIndex, field: str):
        super().__init__(path, index)
        self.field = field
        st = path.stat()
        self.stamp = (st.st_size, st.st_mtime_ns)

    def load(self, row) -> np.ndarray:
        _, _, group, r = row
        return _row_bytes(_chunks.get((self.path, group), lambda: self._read_group(group)), r)

    def _read_group(self, group: int):
        pq = _pyarrow().parquet
        with open(self.path, "rb") as fh:  # opened per row group: no descriptor kept
            st = os.fstat(fh.fileno())
            if (st.st_size, st.st_mtime_ns) != self.stamp:
                raise DataError(f"data file {self.path} changed during the run; restore it, or start a "
                                f"fresh run (job.dump_dir) on the new data")
            table = pq.ParquetFile(fh).read_row_group(group, columns=[self.field])
        return table.column(0).combine_chunks()


def _build_parquet(path: Path, field: str, writer: IndexWriter) -> None:
    pa = _pyarrow()
    try:
        with open(path, "rb") as fh:
            pf = pa.parquet.ParquetFile(fh)
            schema = pf.schema_arrow
            if field not in schema.names:
                raise missing_field(path, "", field, schema.names)
            check_text_type(path, field, str(schema.field(field).type), _is_text(pa, schema.field(field).type))
            first = 0
            for group in range(pf.num_row_groups):
                column = pf.read_row_group(group, columns=[field]).column(0).combine_chunks()
                _add_chunk(writer, column, group, first, path)
                first += len(column)
    except (pa.ArrowException, OSError) as exc:
        raise DataError(f"data file {path} is not a readable Parquet file ({exc})") from None


@register("data_source", "parquet")
class ParquetSource(IndexedSource):
    """Parquet: each row's text column is a document; row groups are read when needed."""

    kind, suffixes, file = "parquet", (".parquet",), ParquetFile
    build = staticmethod(_build_parquet)


class ArrowFile(IndexedFile):
    kind = "arrow"

    def __init__(self, path: Path, index: DocIndex, field: str):
        super().__init__(path, index)
        self.field = field
        self.raw = open_bytes(path)
        self.batches = index.meta["batches"]
        pa = _pyarrow()
        self.schema = pa.ipc.read_schema(pa.py_buffer((index.folder / "schema.arrow").read_bytes()))

    def load(self, row) -> np.ndarray:
        _, _, batch, r = row
        return _row_bytes(_chunks.get((self.path, batch), lambda: self._read_batch(batch)), r)

    def _read_batch(self, batch: int):
        pa = _pyarrow()
        offset, length = self.batches[batch]
        message = pa.ipc.read_message(pa.py_buffer(self.raw.read(offset, offset + length).tobytes()))
        return pa.ipc.read_record_batch(message, self.schema).column(self.field)


def _build_arrow(path: Path, field: str, writer: IndexWriter) -> None:
    """Walk the IPC messages (stream format, or file format after its 8-byte magic), noting
    where each record batch lies."""
    pa = _pyarrow()
    batches, schema, first = [], None, 0
    try:
        with pa.OSFile(str(path)) as src:
            if src.read(6) != b"ARROW1":
                src.seek(0)
            else:
                src.seek(8)
            while True:
                pos = src.tell()
                try:
                    message = pa.ipc.read_message(src)
                except EOFError:
                    break
                if message is None:
                    break
                if message.type == "schema":
                    schema = pa.ipc.read_schema(message)
                    if field not in schema.names:
                        raise missing_field(path, "", field, schema.names)
                    tp = schema.field(field).type
                    check_text_type(path, field, str(tp), _is_text(pa, tp))
                    (writer.folder / "schema.arrow").write_bytes(schema.serialize().to_pybytes())
                elif message.type == "record batch" and schema is not None:
                    column = pa.ipc.read_record_batch(message, schema).column(field)
                    _add_chunk(writer, column, len(batches), first, path)
                    batches.append([pos, src.tell() - pos])
                    first += len(column)
                else:
                    raise DataError(f"data file {path}: Arrow message '{message.type}' is not supported "
                                    f"(dictionary-encoded columns?); write the text column as plain strings")
    except (pa.ArrowException, OSError) as exc:
        raise DataError(f"data file {path} is not a readable Arrow file ({exc})") from None
    if schema is None:
        raise DataError(f"data file {path} is not an Arrow IPC file (no schema)")
    writer.meta["batches"] = batches


@register("data_source", "arrow")
class ArrowSource(IndexedSource):
    """Arrow IPC files (`datasets` `save_to_disk` shards): each row's text is a document."""

    kind, suffixes, file = "arrow", (".arrow",), ArrowFile
    build = staticmethod(_build_arrow)
