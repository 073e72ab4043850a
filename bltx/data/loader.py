"""Recipe `[data]` -> train batches (resumable, per-rank shard, prefetched) and validation
batches, for one source (`data.paths`) or a weighted mixture (`data.sources`).

All sources' files form one id stream (source after source; precomputed entropies are
aligned with it); each source's slice of it is split into its own train part and its
validation tail, so windows never straddle sources or splits.

Fine-tuning examples (`data.records` other than "text", bltx/data/sft.py) are split on an
example boundary and packed whole into windows (bltx/data/packing.py); with
`loss_on = "completion"` a second id stream over the examples' completion marks says which
targets count.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from bltx.data.entropies import open_entropies, producer_of
from bltx.data.formats import open_documents
from bltx.data.mixture import SourceSpec, build_sampler, source_specs
from bltx.data.packing import PackedWindows, split_examples
from bltx.data.prefetch import Prefetcher
from bltx.data.sft import ExampleSpec, open_examples
from bltx.data.stream import IdStream, StreamView, split_stream
from bltx.data.windows import ConcatWindows, Windows, stack_windows
from bltx.sections import DataConfig


class TrainBatches:
    """Endless iterator of train batches for one rank; its state goes into checkpoints."""

    def __init__(self, windows: list[Windows | None], sampler, prefetch: int = 0, doc_ids: bool = False):
        self.windows = windows  # per source (None: a source never trained on)
        self.sampler = sampler  # the position of the batches handed out so far
        self.prefetch = prefetch
        self.doc_ids = doc_ids
        self._ahead: Prefetcher | None = None

    def __iter__(self):
        return self

    def read(self, pairs: np.ndarray) -> dict[str, torch.Tensor]:
        return stack_windows([self.windows[s].window(int(i)) for s, i in pairs], self.doc_ids)

    def __next__(self) -> dict[str, torch.Tensor]:
        if self.prefetch and self._ahead is None:
            self._ahead = Prefetcher(self.sampler, self.read, self.prefetch)
        pairs = self.sampler.next_pairs()
        batch = self._ahead.next(pairs) if self._ahead is not None else None
        if batch is None:
            self.close()  # read here; the next step starts a fresh prefetcher at this position
            batch = self.read(pairs)
        return batch

    def state_dict(self) -> dict:
        return self.sampler.state_dict()

    def load_state_dict(self, state: dict) -> None:
        self.close()  # batches read ahead belong to the old position
        self.sampler.load_state_dict(state)

    def close(self) -> None:
        if self._ahead is not None:
            self._ahead.close()
            self._ahead = None


def validation_batches(
    windows: Windows, batch_size: int, max_batches: int, rank: int = 0, world: int = 1
) -> list[dict[str, torch.Tensor]]:
    """The first `max_batches` global batches of validation windows, in order (this rank's
    share); the same bytes every time, so bpb is comparable across steps and runs.
    `max_batches <= 0` means all windows."""
    n = len(windows)
    per_step = batch_size * world
    total = n if max_batches <= 0 else min(n, max_batches * per_step)
    mine = np.arange(total)[rank::world]
    return [windows.batch(mine[i : i + batch_size]) for i in range(0, len(mine), batch_size)]


@dataclass
class SourceData:
    """One source: its files, its slice of the stream and the windows of its two splits."""

    spec: SourceSpec
    files: list
    train: Windows | None
    validation: Windows | None


@dataclass
class ByteData:
    """Everything the trainer needs from `[data]`: the stream and every source's windows."""

    stream: IdStream
    sources: list[SourceData]
    shuffle_buffer: int = 0
    prefetch: int = 0
    doc_ids: bool = False  # batches carry "doc_ids" (data.document_mask)
    names: list[str] = field(init=False)

    def __post_init__(self):
        self.names = [s.spec.name for s in self.sources]

    @property
    def train(self) -> Windows:
        """The training windows (of all trained sources, one after another)."""
        parts = [s.train for s in self.sources if s.train is not None]
        return parts[0] if len(parts) == 1 else ConcatWindows(parts, "train")

    @property
    def validation(self) -> Windows | None:
        """The validation windows of every source, one after another (None without any)."""
        parts = [s.validation for s in self.sources if s.validation is not None]
        if not parts:
            return None
        return parts[0] if len(parts) == 1 else ConcatWindows(parts)

    def train_batches(self, batch_size: int, seed: int, rank: int = 0, world: int = 1) -> TrainBatches:
        sizes = [len(s.train) if s.train is not None else 0 for s in self.sources]
        weights = [s.spec.weight for s in self.sources]
        sampler = build_sampler(sizes, weights, self.names, batch_size, seed, rank, world, self.shuffle_buffer)
        return TrainBatches([s.train for s in self.sources], sampler, self.prefetch, self.doc_ids)

    def validation_sets(self, batch_size: int, max_batches: int, rank: int = 0,
                        world: int = 1) -> dict[str, list[dict[str, torch.Tensor]]]:
        """Per source with a validation split: its first `max_batches` global batches."""
        return {s.spec.name: validation_batches(s.validation, batch_size, max_batches, rank, world)
                for s in self.sources if s.validation is not None}


def open_source_files(cfg: DataConfig, base: Path | None = None) -> list[tuple[SourceSpec, list]]:
    if cfg.records != "text":  # fine-tuning examples, rendered by bltx/data/sft.py
        examples = ExampleSpec.from_config(cfg)
        return [(spec, open_examples(spec.patterns, base, examples, cfg.cache_dir)) for spec in source_specs(cfg)]
    return [(spec, open_documents(spec.patterns, base, spec.text_field, spec.kind, cfg.cache_dir))
            for spec in source_specs(cfg)]


def open_stream(cfg: DataConfig, base: Path | None = None) -> IdStream:
    """The id stream of every source's files, source after source."""
    return IdStream([f for _, files in open_source_files(cfg, base) for f in files], add_bos=cfg.add_bos)


def build_data(cfg: DataConfig, base: Path | None = None, entropies_path: Path | None = None,
               producer: dict | None = None) -> ByteData:
    """Open every source's files (relative paths against `base`) and split each source.
    `entropies_path`: stored entropies, checked against the data and `producer`."""
    opened = open_source_files(cfg, base)
    stream = IdStream([f for _, files in opened for f in files], add_bos=cfg.add_bos)
    ent = open_entropies(entropies_path, stream, producer) if entropies_path is not None else None
    # Completion marks, position by position with `stream` (bltx/data/sft.py ExampleFile.mask).
    marks = (IdStream([f.mask for _, files in opened for f in files], add_bos=cfg.add_bos)
             if cfg.records != "text" and cfg.loss_on == "completion" else None)
    single = len(opened) == 1
    sources, first = [], 0
    for spec, files in opened:
        start, end = stream.file_range(first, first + len(files))
        first += len(files)
        label = "" if single else f" of source '{spec.name}'"
        starts = None  # examples' starts: packed windows
        if cfg.records == "text":
            train_view, val_view = split_stream(stream, cfg.validation_fraction, start, end)
        else:
            train_view, val_view, starts = split_examples(stream, cfg.validation_fraction, start, end)
        train_view.entropies = ent
        if val_view is not None:
            val_view.entropies = ent
        train = _windows(cfg, train_view, "train" + label, starts, marks) if spec.weight > 0 else None
        validation = _windows(cfg, val_view, "validation" + label, starts, marks) if val_view is not None else None
        for w in (train, validation):
            if w is not None:
                w.doc_ids = cfg.document_mask
        sources.append(SourceData(spec, files, train, validation))
    return ByteData(stream, sources, cfg.shuffle_buffer, cfg.prefetch, cfg.document_mask)


def _windows(cfg: DataConfig, view: StreamView, name: str, starts, marks: IdStream | None) -> Windows:
    """Plain windows cut anywhere, or (with the examples' `starts`) examples packed whole."""
    if starts is None:
        return Windows(view, cfg.seq_len, name)
    mask_view = None if marks is None else StreamView(marks, view.start, view.end)
    return PackedWindows(view, cfg.seq_len, starts, name, mask_view)


def build_data_for_recipe(recipe) -> ByteData:
    """`build_data` with paths resolved the recipe's way (cwd first, then the recipe folder)."""
    from bltx.config import resolve_path

    base = Path(recipe.source).parent if recipe.source else None
    if not recipe.data.entropies_path:
        return build_data(recipe.data, base)
    ent = resolve_path(recipe, recipe.data.entropies_path)
    producer = producer_of(recipe.model.get("patcher")) if isinstance(recipe.model, dict) else None
    return build_data(recipe.data, base, ent, producer)
