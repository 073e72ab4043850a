"""Byte data: document sources by file type (raw, JSON lines, Parquet, Arrow) read on demand
through cached indexes, one EOS-joined id stream, per-source train/validation splits,
fixed-length windows, weighted mixtures and a resumable, shard-aware, prefetching loader."""

from bltx.data.loader import ByteData, TrainBatches, build_data, build_data_for_recipe, validation_batches
from bltx.data.sampler import ResumableSampler
from bltx.data.sources import expand_paths, open_sources, resolve_bundled
from bltx.data.stream import IdStream, StreamView, split_stream
from bltx.data.windows import Windows

__all__ = [
    "ByteData",
    "IdStream",
    "ResumableSampler",
    "StreamView",
    "TrainBatches",
    "Windows",
    "build_data",
    "build_data_for_recipe",
    "expand_paths",
    "open_sources",
    "resolve_bundled",
    "split_stream",
    "validation_batches",
]
