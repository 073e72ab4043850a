"""Entropy patcher: Patcher contract, HF's boundary rule, monotonic rule, frozen model, weights."""

import pytest
import torch

from bltx.errors import CheckpointError, ConfigError
from bltx.patching.base import starts_to_lengths, starts_to_patch_ids
from bltx.patching.entropy import starts_from_entropies
from bltx.registry import build

SMALL_LM = {"type": "transformer", "dim": 16, "n_layers": 1, "n_heads": 2, "window": 4}


def make(**cfg):
    torch.manual_seed(0)
    return build("patcher", {"type": "entropy", "model": SMALL_LM, **cfg}, where="patcher")


def rand_ids(B=3, T=40, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(4, 260, (B, T), generator=g)


def mid_threshold(patcher, ids):
    return float(patcher.entropies(ids).median())


def test_contract_and_causality():
    p = make()
    ids = rand_ids()
    p.threshold = mid_threshold(p, ids)
    starts = p(ids)
    assert starts.dtype == torch.bool and starts.shape == ids.shape
    assert starts[:, 0].all() and starts[:, 1].all()
    assert 0 < (~starts).sum()
    for t in (3, 17, 30):
        changed = ids.clone()
        changed[:, t + 1:] = rand_ids(seed=t)[:, t + 1:]
        assert torch.equal(p(changed)[:, : t + 1], starts[:, : t + 1])
        # Stronger than the contract: starts[t] is fixed by ids[:t] (the next byte's start is
        # predictable), which the BLT decoder relies on.
        changed[:, t] = (changed[:, t] + 1 - 4) % 256 + 4
        assert torch.equal(p(changed)[:, : t + 1], starts[:, : t + 1])


def test_max_patch_length_is_honoured():
    p = make(threshold=100.0, max_patch_length=3)  # no entropy starts at all
    starts = p(rand_ids())
    assert starts_to_lengths(starts).max() <= 3


def test_precomputed_entropies_equal_realtime():
    p = make()
    ids = rand_ids()
    p.threshold = mid_threshold(p, ids)
    assert torch.equal(p(ids, entropies=p.entropies(ids)), p(ids))


def test_frozen_and_no_grad():
    p = make()
    assert all(not q.requires_grad for q in p.parameters())
    p.train()
    assert not p.entropy_model.training
    assert not p.entropies(rand_ids()).requires_grad


@pytest.mark.parametrize("seed", range(5))
def test_global_rule_matches_hf_patch_lengths_from_entropies(seed):
    hf_blt = pytest.importorskip("transformers.models.blt.modeling_blt")
    g = torch.Generator().manual_seed(seed)
    ent = torch.rand(4, 25, generator=g) * 3
    thr = 1.5
    lengths = hf_blt.BltPatcher.patch_lengths_from_entropies(ent, 25, patch_size=4, threshold=thr)
    hf_ids = hf_blt.BltModel._patch_ids_from_lengths(None, lengths, 25)
    assert torch.equal(starts_to_patch_ids(starts_from_entropies(ent, thr, None)), hf_ids)


def test_max_patch_length_matches_hf_process_patch_lengths():
    hf_blt = pytest.importorskip("transformers.models.blt.modeling_blt")
    ent = torch.rand(1, 30, generator=torch.Generator().manual_seed(3)) * 3
    from bltx.patching.base import split_long_patches

    starts = starts_from_entropies(ent, 2.5, None)
    ours = split_long_patches(starts, 4)
    hf_lengths = hf_blt.process_patch_lengths(starts_to_lengths(starts), 4)
    assert torch.equal(starts_to_patch_ids(ours), hf_blt.BltModel._patch_ids_from_lengths(None, hf_lengths, 30))


def test_monotonic_rule():
    ent = torch.tensor([[0.0, 1.0, 1.2, 3.0, 2.0, 2.1, 2.9]])
    # H(x_t) = ent[t-1]; start at t >= 2 iff ent[t-1] - ent[t-2] > 0.5
    starts = starts_from_entropies(ent, None, 0.5)
    assert starts.tolist() == [[True, True, True, False, True, False, False]]
    p = make(rule="monotonic", relative_threshold=0.5)
    assert p(torch.zeros(1, 7, dtype=torch.long) + 5, entropies=ent).tolist() == starts.tolist()


def test_checkpoint_loading(tmp_path):
    src = make()
    torch.save(src.entropy_model.state_dict(), tmp_path / "em.pt")
    torch.manual_seed(123)
    p = build("patcher", {"type": "entropy", "model": SMALL_LM, "checkpoint": str(tmp_path / "em.pt")})
    for a, b in zip(p.entropy_model.state_dict().values(), src.entropy_model.state_dict().values()):
        assert torch.equal(a, b)
    # A BLT state dict (prefixed keys) works too.
    torch.save({f"patcher.entropy_model.{k}": v for k, v in src.entropy_model.state_dict().items()}, tmp_path / "blt.pt")
    build("patcher", {"type": "entropy", "model": SMALL_LM, "checkpoint": str(tmp_path / "blt.pt")})
    with pytest.raises(CheckpointError, match="not found"):
        build("patcher", {"type": "entropy", "model": SMALL_LM, "checkpoint": str(tmp_path / "missing.pt")})
    torch.save({"foo": torch.zeros(1)}, tmp_path / "bad.pt")
    with pytest.raises(CheckpointError, match="does not fit"):
        build("patcher", {"type": "entropy", "model": SMALL_LM, "checkpoint": str(tmp_path / "bad.pt")})


def test_config_errors():
    with pytest.raises(ConfigError, match="relative_threshold"):
        build("patcher", {"type": "entropy", "rule": "monotonic"})
    with pytest.raises(ConfigError, match="unknown attention backend"):
        build("patcher", {"type": "entropy", "attention": "nope"})
    with pytest.raises(ConfigError, match="patcher.model"):
        build("patcher", {"type": "entropy", "model": {"type": "transformer", "layers": 2}}, where="patcher")
