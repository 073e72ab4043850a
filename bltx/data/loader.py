"""Recipe `[data]` -> train batches (resumable, per-rank shard) and validation batches."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from bltx.data.entropies import open_entropies, producer_of
from bltx.data.sampler import ResumableSampler
from bltx.data.sources import open_sources
from bltx.data.stream import IdStream, split_stream
from bltx.data.windows import Windows
from bltx.sections import DataConfig


class TrainBatches:
    """Endless iterator of train batches for one rank; its state goes into checkpoints."""

    def __init__(self, windows: Windows, batch_size: int, seed: int, rank: int = 0, world: int = 1):
        self.windows = windows
        self.sampler = ResumableSampler(len(windows), batch_size, seed=seed, rank=rank, world=world)

    def __iter__(self):
        return self

    def __next__(self) -> dict[str, torch.Tensor]:
        return self.windows.batch(self.sampler.next_indices())

    def state_dict(self) -> dict:
        return self.sampler.state_dict()

    def load_state_dict(self, state: dict) -> None:
        self.sampler.load_state_dict(state)


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
class ByteData:
    """Everything the trainer needs from `[data]`: the stream, its splits and their windows."""

    stream: IdStream
    train: Windows
    validation: Windows | None

    def train_batches(self, batch_size: int, seed: int, rank: int = 0, world: int = 1) -> TrainBatches:
        return TrainBatches(self.train, batch_size, seed, rank, world)


def open_stream(cfg: DataConfig, base: Path | None = None) -> IdStream:
    return IdStream(open_sources(cfg.paths, base), add_bos=cfg.add_bos)


def build_data(cfg: DataConfig, base: Path | None = None, entropies_path: Path | None = None,
               producer: dict | None = None) -> ByteData:
    """Open the files of `cfg.paths` (relative ones against `base`) and split them.
    `entropies_path`: stored entropies, checked against the data and `producer`."""
    stream = open_stream(cfg, base)
    train_view, val_view = split_stream(stream, cfg.validation_fraction)
    if entropies_path is not None:
        ent = open_entropies(entropies_path, stream, producer)
        train_view.entropies = ent
        if val_view is not None:
            val_view.entropies = ent
    train = Windows(train_view, cfg.seq_len, "train")
    validation = Windows(val_view, cfg.seq_len, "validation") if val_view is not None else None
    return ByteData(stream, train, validation)


def build_data_for_recipe(recipe) -> ByteData:
    """`build_data` with paths resolved the recipe's way (cwd first, then the recipe folder)."""
    from bltx.config import resolve_path

    base = Path(recipe.source).parent if recipe.source else None
    if not recipe.data.entropies_path:
        return build_data(recipe.data, base)
    ent = resolve_path(recipe, recipe.data.entropies_path)
    producer = producer_of(recipe.model.get("patcher")) if isinstance(recipe.model, dict) else None
    return build_data(recipe.data, base, ent, producer)
