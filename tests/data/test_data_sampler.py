"""The resumable sampler: exact resume, epochs, and rank shards."""

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from bltx.data import ResumableSampler
from bltx.errors import CheckpointError


@given(n=st.integers(1, 50), batch=st.integers(1, 9), before=st.integers(0, 20), after=st.integers(1, 10))
def test_resumed_sampler_continues_exactly(n, batch, before, after):
    a = ResumableSampler(n, batch, seed=3)
    for _ in range(before):
        a.next_indices()
    b = ResumableSampler(n, batch, seed=3)
    b.load_state_dict(a.state_dict())
    for _ in range(after):
        np.testing.assert_array_equal(a.next_indices(), b.next_indices())


def test_each_epoch_visits_every_window_once():
    s = ResumableSampler(12, 4, seed=0)
    seen = np.concatenate([s.next_indices() for _ in range(3)])
    assert sorted(seen.tolist()) == list(range(12))
    assert s.epoch == 1 and s.cursor == 0
    nxt = np.concatenate([s.next_indices() for _ in range(3)])
    assert sorted(nxt.tolist()) == list(range(12)) and not np.array_equal(seen, nxt)


def test_batches_run_on_across_epochs_when_data_is_small():
    s = ResumableSampler(3, 5, seed=1)
    assert len(s.next_indices()) == 5  # fewer windows than a batch still works


@given(n=st.integers(1, 40), batch=st.integers(1, 5), world=st.integers(1, 4), steps=st.integers(1, 6))
def test_rank_shards_partition_the_global_batch(n, batch, world, steps):
    single = ResumableSampler(n, batch * world, seed=7)
    ranks = [ResumableSampler(n, batch, seed=7, rank=r, world=world) for r in range(world)]
    for _ in range(steps):
        together = np.concatenate([r.next_indices() for r in ranks])
        np.testing.assert_array_equal(together, single.next_indices())


def test_state_from_other_data_is_refused():
    s = ResumableSampler(10, 2)
    state = ResumableSampler(11, 2).state_dict()
    with pytest.raises(CheckpointError, match="same data.paths and data.seq_len"):
        s.load_state_dict(state)
