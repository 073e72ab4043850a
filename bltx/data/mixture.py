"""Weighted mixtures of document sources.

    [data]
    sources = [{path = "web/*.jsonl.zst", weight = 0.7}, {path = "books.parquet", weight = 0.3, text_field = "content"}]

Every source has its own train and validation split and its own shuffled window order
(bltx/data/sampler.py). A step fills the global batch slot by slot: slot j takes its source
from a draw seeded by (job.seed, step) with the sources' weights, then that source's next
window. The draw does not depend on the layout, so every data-parallel layout reads the same
windows for the same global batch, and rank r keeps its slice. The state (the step and
every source's epoch and cursor) goes into checkpoints; a resumed run reads what the
uninterrupted one would. A source of weight 0 is only evaluated.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

from bltx.data.sampler import ResumableSampler
from bltx.errors import CheckpointError
from bltx.sections import DataConfig

_MIX_KEY = 0x6D6978  # separates the source draws from the window orders


@dataclass
class SourceSpec:
    """One source after defaults are applied."""

    name: str
    weight: float
    patterns: list[str]
    text_field: str
    kind: str = "auto"


def _name_from(pattern: str) -> str:
    stem = pattern.rstrip("/").split(":")[-1].split("/")[-1]
    stem = re.sub(r"(\.(jsonl|json|parquet|arrow|txt|gz|zst))+$", "", stem, flags=re.I)
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", stem).strip("_") or "source"


def source_specs(cfg: DataConfig) -> list[SourceSpec]:
    """`data.sources`, or `data.paths` as one source of weight 1."""
    if not cfg.sources:
        return [SourceSpec(_name_from(cfg.paths[0]) if cfg.paths else "data", 1.0, list(cfg.paths), cfg.text_field)]
    specs, seen = [], set()
    for i, src in enumerate(cfg.sources):
        patterns = [src.path] if isinstance(src.path, str) else list(src.path)
        name = src.name or _name_from(patterns[0])
        if name in seen:
            name = f"{name}_{i}"
        seen.add(name)
        specs.append(SourceSpec(name, src.weight, patterns, src.text_field or cfg.text_field, src.type))
    return specs


class MixtureSampler:
    """Per-rank (source, window) batches from several sources, drawn by weight."""

    def __init__(self, sizes: list[int], weights: list[float], names: list[str], batch_size: int,
                 seed: int = 0, rank: int = 0, world: int = 1, shuffle_buffer: int = 0):
        self.names = names
        self.weights = np.asarray(weights, dtype=np.float64)
        self.p = self.weights / self.weights.sum()
        self.batch_size, self.seed, self.rank, self.world = batch_size, seed, rank, world
        self.step = 0
        # Source i shuffles with its own seed; sources never drawn need no sampler.
        self.samplers = [
            ResumableSampler(n, 1, seed=seed * 1000 + i + 1, shuffle_buffer=shuffle_buffer) if w > 0 else None
            for i, (n, w) in enumerate(zip(sizes, weights))
        ]

    def choices(self, step: int) -> np.ndarray:
        """The source of every slot of step `step`'s global batch."""
        rng = np.random.default_rng([self.seed, _MIX_KEY, step])
        return rng.choice(len(self.p), size=self.batch_size * self.world, p=self.p)

    def next_pairs(self) -> np.ndarray:
        choice = self.choices(self.step)
        pairs = np.stack([choice, np.zeros_like(choice)], axis=1)
        for s in np.unique(choice):
            slots = choice == s
            pairs[slots, 1] = self.samplers[s].take(int(slots.sum()))
        self.step += 1
        lo = self.rank * self.batch_size
        return pairs[lo : lo + self.batch_size]

    def realised(self, steps: int) -> np.ndarray:
        """Fraction of the windows of steps [0, steps) each source supplies."""
        counts = np.zeros(len(self.p))
        for step in range(steps):
            counts += np.bincount(self.choices(step), minlength=len(self.p))
        return counts / max(1.0, counts.sum())

    def state_dict(self) -> dict:
        return {"step": self.step, "mixture": [
            None if s is None else {"name": n, **s.state_dict()} for n, s in zip(self.names, self.samplers)
        ]}

    def load_state_dict(self, state: dict) -> None:
        saved = state.get("mixture")
        if saved is None or len(saved) != len(self.samplers):
            count = 1 if saved is None else len(saved)
            raise CheckpointError(f"checkpoint's data has {count} source(s), this run {len(self.samplers)}; "
                                  f"resume with the same data.sources")
        for name, sampler, entry in zip(self.names, self.samplers, saved):
            if (sampler is None) != (entry is None) or (entry is not None and entry["name"] != name):
                raise CheckpointError(f"checkpoint's data sources {[e and e['name'] for e in saved]} differ "
                                      f"from this run's {self.names} (or their weights turned 0); resume with "
                                      f"the same data.sources")
            if sampler is not None:
                sampler.load_state_dict(entry)
        self.step = int(state["step"])


def build_sampler(sizes: list[int], weights: list[float], names: list[str], batch_size: int, seed: int,
                  rank: int = 0, world: int = 1, shuffle_buffer: int = 0):
    """One source: the plain sampler (its state as before mixtures); several: a mixture."""
    if len(sizes) == 1:
        return ResumableSampler(sizes[0], batch_size, seed, rank, world, shuffle_buffer)
    return MixtureSampler(sizes, weights, names, batch_size, seed, rank, world, shuffle_buffer)
