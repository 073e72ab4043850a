"""Supervised fine-tuning examples: records of JSONL or Parquet files rendered to bytes, each
byte marked as completion (trained on with `data.loss_on = "completion"`) or not.

    data.records = "prompt_completion"   # bytes of prompt_field, then of completion_field
    data.records = "chat"                # messages_field: [{role, content}, ...] rendered
                                         # with data.template (role -> "...{content}...")

The index pass renders every record once into the index folder (bltx/data/doc_index.py):
`text.bin`, the examples' bytes end to end, and `mask.bin`, one byte per text byte (1: a
completion byte), so training reads both at random like any indexed document. The mask is
exposed as a second document file with the same index (`ExampleFile.mask`), so an id
stream over the masks (bltx/data/stream.py) lines up position by position with the stream
over the texts: the loader reads which targets count with the same code that reads ids.
Rendering depends on the fields and the template, so they are part of the index's key.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from bltx.data.doc_index import DocIndex, IndexWriter, build_index, cache_root
from bltx.data.formats import IndexedFile
from bltx.data.jsonl import COMPRESSED, encode_text, open_text_stream, record_of
from bltx.data.sources import open_bytes, open_sources
from bltx.errors import DataError

# The chat template when the recipe gives none. Bytes, not tokens: the markers are text the
# model learns like any other; what follows {content} in an assistant turn is trained on, so
# the model learns to end its turn.
DEFAULT_TEMPLATE = {
    "system": "<|system|>\n{content}\n",
    "user": "<|user|>\n{content}\n",
    "assistant": "<|assistant|>\n{content}<|end|>\n",
}
# Chat roles whose messages are the completion.
COMPLETION_ROLES = ("assistant",)
JSONL_SUFFIXES = tuple(f"{s}{c}" for s in (".jsonl", ".json") for c in ("", *COMPRESSED))


@dataclass(frozen=True)
class ExampleSpec:
    """How records become examples (the `[data]` keys that change the rendered bytes)."""

    records: str
    prompt_field: str = "prompt"
    completion_field: str = "completion"
    messages_field: str = "messages"
    template: tuple[tuple[str, str], ...] = tuple(DEFAULT_TEMPLATE.items())

    @classmethod
    def from_config(cls, cfg) -> "ExampleSpec":
        template = cfg.template or DEFAULT_TEMPLATE
        return cls(cfg.records, cfg.prompt_field, cfg.completion_field, cfg.messages_field,
                   tuple(sorted(template.items())))

    def key(self) -> str:
        """What the index folder's name depends on besides the file."""
        if self.records == "chat":
            return json.dumps(["chat", self.messages_field, self.template])
        return json.dumps(["prompt_completion", self.prompt_field, self.completion_field])

    @property
    def fields(self) -> list[str]:
        return [self.messages_field] if self.records == "chat" else [self.prompt_field, self.completion_field]


def _string(record: dict, name: str, where: str, fix: str) -> str:
    if name not in record:
        shown = ", ".join(sorted(map(str, record))[:12]) or "none"
        raise DataError(f"{where}: no field '{name}' (fields: {shown}); {fix}")
    value = record[name]
    if not isinstance(value, str):
        raise DataError(f"{where}: field '{name}' is {type(value).__name__}, not a string")
    return value


def render(record: dict, spec: ExampleSpec, where: str) -> tuple[bytes, bytes]:
    """(the example's bytes, one mask byte per byte: 1 where it is completion)."""
    if spec.records == "prompt_completion":
        fix = "set data.prompt_field / data.completion_field"
        prompt = encode_text(_string(record, spec.prompt_field, where, fix))
        completion = encode_text(_string(record, spec.completion_field, where, fix))
        return prompt + completion, bytes(len(prompt)) + b"\x01" * len(completion)
    template = dict(spec.template)
    messages = record.get(spec.messages_field)
    if not isinstance(messages, list):
        got = "missing" if messages is None else type(messages).__name__
        raise DataError(f"{where}: field '{spec.messages_field}' is {got}, not a list of {{role, content}} "
                        f"messages; set data.messages_field")
    text, mask = bytearray(), bytearray()
    for i, msg in enumerate(messages):
        at = f"{where} message {i}"
        if not isinstance(msg, dict):
            raise DataError(f"{at}: a {type(msg).__name__}, not an object with 'role' and 'content'")
        role = _string(msg, "role", at, "each message needs a role")
        if role not in template:
            raise DataError(f"{at}: role '{role}' has no data.template entry (roles: {', '.join(template)}); "
                            f"add data.template.{role}")
        content = encode_text(_string(msg, "content", at, "each message needs a content"))
        before, after = (encode_text(part) for part in template[role].split("{content}"))
        trained = role in COMPLETION_ROLES
        text += before + content + after
        mask += bytes(len(before)) + (b"\x01" if trained else b"\x00") * (len(content) + len(after))
    return bytes(text), bytes(mask)


def _jsonl_records(path: Path):
    with open_text_stream(path) as lines:
        for lineno, line in enumerate(lines, 1):
            if line.strip():
                yield f"data file {path} line {lineno}", record_of(line, path, lineno, "the example's fields")


def _parquet_records(path: Path, fields: list[str]):
    from bltx.data.columnar import _pyarrow

    pa = _pyarrow()
    try:
        pf = pa.parquet.ParquetFile(str(path))
        missing = [f for f in fields if f not in pf.schema_arrow.names]
        if missing:
            raise DataError(f"data file {path}: no column '{missing[0]}' (columns: "
                            f"{', '.join(pf.schema_arrow.names[:12])}); set data.prompt_field / "
                            f"data.completion_field / data.messages_field")
        row = 0
        for batch in pf.iter_batches(columns=fields):
            for record in batch.to_pylist():
                yield f"data file {path} row {row} (counting from 0)", record
                row += 1
    except (pa.ArrowException, OSError) as exc:
        raise DataError(f"data file {path} is not a readable Parquet file ({exc})") from None


def _format_of(path: Path) -> str:
    name = path.name.lower()
    if name.endswith(JSONL_SUFFIXES):
        return "jsonl"
    if name.endswith(".parquet"):
        return "parquet"
    raise DataError(f"data file {path}: examples (data.records) are read from .jsonl/.json (also .gz, .zst) "
                    f"or .parquet files; convert it or set data.records = \"text\"")


def _build(path: Path, fmt: str, spec: ExampleSpec, writer: IndexWriter) -> None:
    records = _jsonl_records(path) if fmt == "jsonl" else _parquet_records(path, spec.fields)
    with open(writer.folder / "text.bin", "wb") as text, open(writer.folder / "mask.bin", "wb") as mask:
        for where, record in records:
            data, marks = render(record, spec, where)
            if data:  # an example without bytes is no document, as an empty text is
                text.write(data)
                mask.write(marks)
                writer.add(len(data), 0, 0)


class ExampleFile(IndexedFile):
    """The rendered examples of one file (bltx/protocols.py DocumentFile), read from the
    index folder; `mask` is the same documents' completion marks (0/1 per byte)."""

    def __init__(self, path: Path, index: DocIndex, kind: str, blob: str = "text.bin"):
        super().__init__(path, index)
        self.kind = kind
        self.raw = open_bytes(index.folder / blob) if self.num_docs else None
        self.mask = ExampleFile(path, index, kind, "mask.bin") if blob == "text.bin" else None

    def read_doc(self, doc: int, lo: int, hi: int) -> np.ndarray:
        start = int(self.index.rows[doc, 0])
        return self.raw.read(start + lo, start + hi)


def open_examples(patterns: list[str], base: Path | None, spec: ExampleSpec, cache_dir: str = "") -> list:
    """Expand `patterns` and open every file's examples (rendered once, then cached)."""
    root = cache_root(cache_dir)

    def opener(path: Path) -> ExampleFile:
        fmt = _format_of(path)
        folder = build_index(root, path, f"sft-{fmt}", spec.key(), lambda w: _build(path, fmt, spec, w))
        return ExampleFile(path, DocIndex(folder), fmt)

    return open_sources(patterns, base, opener=opener)
