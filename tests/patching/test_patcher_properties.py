"""Hypothesis properties every registered patcher must satisfy (the Patcher contract):
coverage, contiguity, first byte starts a patch, max length respected, causality and
determinism. New patchers (plugins too) get checked by adding a table to PATCHERS."""

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

import bltx
import plugins.punctuation_patcher  # noqa: F401  (registers "punctuation")
from bltx.bytes import BOS_ID, OFFSET
from bltx.patching.base import (
    lengths_to_patch_ids,
    lengths_to_starts,
    split_long_patches,
    starts_to_lengths,
    starts_to_patch_ids,
)
from bltx.registry import get_registry

TINY_ENTROPY_MODEL = {"type": "transformer", "dim": 32, "n_layers": 1, "n_heads": 2}

PATCHERS = {
    "byte": {"type": "byte"},
    "static": {"type": "static", "stride": 3},
    "space": {"type": "space"},
    "space_max5": {"type": "space", "max_patch_length": 5},
    "punctuation": {"type": "punctuation"},
    "punctuation_max3": {"type": "punctuation", "max_patch_length": 3},
    # A randomly initialised entropy model (seed 0) gives entropies between about 4.76 and
    # 5.23 nats on these bytes, median 5.08: thresholds there exercise both outcomes
    # (test_both_outcomes_occur checks it).
    "entropy_global": {"type": "entropy", "threshold": 5.08, "model": TINY_ENTROPY_MODEL},
    "entropy_monotonic": {"type": "entropy", "rule": "monotonic", "relative_threshold": 0.0, "model": TINY_ENTROPY_MODEL},
    "entropy_max4": {"type": "entropy", "threshold": 5.0, "max_patch_length": 4, "model": TINY_ENTROPY_MODEL},
    # Causal BPE boundaries (bltx/patching/bpe.py): a small vocabulary trained on the bundled
    # corpus (cached under ~/.cache/bltx/bpe after the first run).
    "bpe": {"type": "bpe", "vocab_size": 300},
    "bpe_max3": {"type": "bpe", "vocab_size": 300, "max_patch_length": 3},
}

_built: dict[str, torch.nn.Module] = {}


def patcher(name):
    if name not in _built:
        torch.manual_seed(0)
        _built[name] = bltx.build("patcher", PATCHERS[name]).eval()
    return _built[name]


# Byte sequences rich in spaces and punctuation so word-based patchers see boundaries.
byte_values = st.one_of(st.sampled_from(b" \n.,!?aeiouxyz"), st.integers(0, 255))
sequences = st.lists(byte_values, min_size=1, max_size=40)


def to_ids(batch: list[list[int]]) -> torch.Tensor:
    width = max(len(seq) for seq in batch)
    rows = [[BOS_ID] + [b + OFFSET for b in seq] + [OFFSET + 32] * (width - len(seq)) for seq in batch]
    return torch.tensor(rows)


def test_every_registered_patcher_is_covered():
    missing = set(get_registry("patcher").names()) - {t["type"] for t in PATCHERS.values()}
    assert not missing, f"add a table for {missing} to PATCHERS"


@pytest.mark.parametrize("name", list(PATCHERS))
@given(batch=st.lists(sequences, min_size=1, max_size=3))
def test_coverage_and_max_length(name, batch):
    ids = to_ids(batch)
    with torch.no_grad():
        starts = patcher(name)(ids)
    assert starts.dtype == torch.bool and starts.shape == ids.shape
    assert bool(starts[:, 0].all()), "the first byte must start a patch"
    lengths = starts_to_lengths(starts)
    assert lengths.sum(dim=1).tolist() == [ids.shape[1]] * ids.shape[0]
    patch_ids = starts_to_patch_ids(starts)
    # Contiguous, non-empty, in order: ids rise by 0 or 1 and start at 0.
    steps = patch_ids[:, 1:] - patch_ids[:, :-1]
    assert bool(((steps == 0) | (steps == 1)).all()) and bool((patch_ids[:, 0] == 0).all())
    for row, n in zip(lengths, starts.sum(dim=1)):
        assert bool((row[:n] > 0).all()) and bool((row[n:] == 0).all())
    limit = PATCHERS[name].get("max_patch_length")
    if limit:
        assert int(lengths.max()) <= limit


@pytest.mark.parametrize("name", list(PATCHERS))
@given(seq=sequences, tail=sequences, data=st.data())
def test_causality_and_determinism(name, seq, tail, data):
    t = data.draw(st.integers(0, len(seq)))  # positions 0..t (BOS + t bytes) are kept
    a = to_ids([seq])
    b = to_ids([seq[:t] + tail])
    # Strict causality: starts[t + 1] is decided from positions <= t, so it must agree too
    # (for patchers that claim it; the others must still not move boundaries at or before t).
    strict = patcher(name).predicts_next_start
    n = min(a.shape[1], b.shape[1], t + 2 if strict else t + 1)
    with torch.no_grad():
        sa, sb = patcher(name)(a), patcher(name)(b)
        again = patcher(name)(a)
    assert torch.equal(sa, again), "patching must be deterministic"
    assert torch.equal(sa[:, :n], sb[:, :n]), "a byte moved a boundary at or before it"


@given(st.lists(st.booleans(), min_size=1, max_size=50), st.integers(1, 6))
def test_helpers_round_trip_and_split(flags, max_len):
    starts = torch.tensor([[True] + flags[1:]])
    T = starts.shape[1]
    lengths = starts_to_lengths(starts)
    assert torch.equal(lengths_to_starts(lengths, T), starts)
    assert torch.equal(lengths_to_patch_ids(lengths, T), starts_to_patch_ids(starts))
    padded = starts_to_lengths(starts, max_patches=T + 3)
    assert torch.equal(lengths_to_starts(padded, T), starts)
    split = split_long_patches(starts, max_len)
    assert bool((split | ~starts).all()), "splitting only adds starts"
    assert int(starts_to_lengths(split).max()) <= max_len


def test_split_matches_hf_process_patch_lengths():
    from transformers.models.blt.modeling_blt import process_patch_lengths

    lengths = torch.tensor([[1, 9, 3, 4, 0]])
    expected = process_patch_lengths(lengths, 4)
    ours = starts_to_lengths(split_long_patches(lengths_to_starts(lengths, 17), 4))
    assert ours.tolist() == expected.tolist()


# Patchers for which "no start" never happens by definition.
ALWAYS_STARTS = {"byte"}


@pytest.mark.parametrize("name", list(PATCHERS))
def test_both_outcomes_occur(name):
    """The properties above mean little if a patcher never (or always) opens a patch on the
    generated bytes: over a fixed sample drawn like them, beyond the forced starts (BOS and
    the first byte), both a start and a non-start occur."""
    gen = torch.Generator().manual_seed(0)
    alphabet = torch.tensor(list(b" \n.,!?aeiouxyz") + list(range(256)))
    rows = [[int(b) for b in alphabet[torch.randint(len(alphabet), (40,), generator=gen)]] for _ in range(16)]
    with torch.no_grad():
        starts = patcher(name)(to_ids(rows))[:, 2:]
    assert bool(starts.any()), f"{name} never opened a patch beyond the forced starts"
    if name not in ALWAYS_STARTS:
        assert not bool(starts.all()), f"{name} opened a patch at every byte"
