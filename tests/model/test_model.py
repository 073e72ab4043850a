"""BLT model: building, patching API, causality, gradients, meta init, config errors."""

import pytest
import torch

from bltx.errors import ConfigError
from bltx.model.blt import BLT
from bltx.model.debug import tiny_table
from bltx.registry import build


def make(**overrides):
    torch.manual_seed(0)
    return build("model", tiny_table(**overrides), where="model")


def rand_ids(B=2, T=24, seed=1):
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(4, 260, (B, T), generator=g)
    ids[:, 0] = 1  # BOS
    return ids


def test_forward_shapes_and_counts():
    model = make()
    ids = rand_ids()
    out = model(ids)
    logits = out.logits
    assert out.nll is None and torch.equal(out.starts, model.patch(ids))
    assert logits.shape == (2, 24, 260)
    assert torch.isfinite(logits).all()
    counts = model.num_params()
    assert set(counts) == {"patcher", "byte_embedder", "encoder", "latent", "decoder", "total"}
    assert counts["total"] == sum(p.numel() for p in model.parameters())
    trainable = model.num_params(trainable_only=True)
    assert trainable["patcher"] == 0 and trainable["latent"] == counts["latent"]


def test_patch_api_matches_forward():
    model = make()
    ids = rand_ids()
    starts = model.patch(ids)
    assert starts.shape == ids.shape and starts.dtype == torch.bool
    assert starts[:, :2].all()  # entropy patching: BOS and the first byte open patches
    assert 1 < starts.sum() < starts.numel()  # the tiny threshold gives mixed patches
    full = model.patch(ids, include_next=True)
    assert torch.equal(full[:, :-1], starts)
    torch.testing.assert_close(model(ids).logits, model(ids, starts=full).logits, rtol=0, atol=0)
    # Precomputed entropies give the same result as realtime patching.
    ent = model.patcher.entropies(ids)
    torch.testing.assert_close(model(ids, entropies=ent).logits, model(ids).logits, rtol=0, atol=0)
    # patch_lengths and starts describe the same patching.
    from bltx.patching.base import starts_to_lengths

    lengths = starts_to_lengths(starts)
    torch.testing.assert_close(model(ids, patch_lengths=lengths).logits, model(ids, starts=starts).logits, rtol=0, atol=0)
    # With targets the forward returns their summed NLL, the same as the logits' cross-entropy.
    targets = ids.roll(-1, 1)
    nll = model(ids, targets).nll
    ref = torch.nn.functional.cross_entropy(model(ids).logits.flatten(0, 1), targets.flatten(), reduction="sum")
    torch.testing.assert_close(nll, ref, rtol=1e-6, atol=1e-4)


@pytest.mark.parametrize("patcher", ["entropy", "static", "space"])
def test_end_to_end_causality(patcher):
    if patcher == "static":
        model = make(patcher={"type": "static", "stride": 3})
    elif patcher == "space":
        model = make(patcher={"type": "space"})
    else:
        model = make()
    model.eval()
    ids = rand_ids(B=1, T=20)
    if patcher == "space":
        ids[0, ::3] = ord(" ") + 4
    base = model(ids).logits
    for t in (0, 5, 11, 18):
        changed = ids.clone()
        changed[:, t + 1:] = torch.randint(4, 260, changed[:, t + 1:].shape)
        out = model(changed).logits
        # Other future bytes change the eager patch count P and with it the latent's kernel
        # shapes: rounding noise near 1e-6 (exactly 0 when P stays); a leak is far larger.
        torch.testing.assert_close(out[:, : t + 1], base[:, : t + 1], rtol=0, atol=1e-5)


def test_every_trainable_parameter_gets_gradient():
    model = make(
        encoder={"type": "local", "dim": 32, "n_layers": 2, "n_heads": 2, "cross_attn_k": 3,
                 "cross_attn_all_layers": True, "window": 4},
    )
    model.train()
    ids = rand_ids()
    loss = torch.nn.functional.cross_entropy(model(ids).logits.flatten(0, 1), ids.flatten())
    loss.backward()
    trainable = {n: p for n, p in model.named_parameters() if p.requires_grad}
    assert trainable and not any(n.startswith("patcher.") for n in trainable)
    missing = [n for n, p in trainable.items() if p.grad is None or not torch.any(p.grad != 0)]
    assert missing == []
    assert all(p.grad is None for n, p in model.named_parameters() if n.startswith("patcher."))
    assert not model.patcher.training  # frozen patcher stays in eval mode


def test_meta_build_then_init_weights():
    with torch.device("meta"):
        model = build("model", tiny_table(), where="model")
    assert all(p.is_meta for p in model.parameters())
    model.to_empty(device="cpu")
    torch.manual_seed(0)
    model.init_weights()
    for name, p in model.named_parameters():
        assert torch.isfinite(p).all(), name
        if name.endswith("norm.weight"):
            assert torch.all(p == 1), name
        else:
            assert p.std() > 0, name
    assert torch.isfinite(model(rand_ids()).logits).all()


def test_padding_patches_never_reach_real_bytes():
    model = make(max_patches=None, patcher={"type": "static", "stride": 4})
    ids = rand_ids(T=24)
    starts = model._starts(ids, None, None, None)
    real = model(ids).logits  # eager sizes the patch axis to the real count (6 here)
    for P in (6, 10, 24):  # and padded axes (a compiled whole forward pads to max_patches)
        slots = torch.zeros(ids.shape[0], P, dtype=torch.bool)
        torch.testing.assert_close(model.forward_patched(ids, starts, slots)[0], real, rtol=0, atol=1e-5)
    # max_patches bounds whole-forward graphs only: an eager window over it is exact.
    small = make(max_patches=4, patcher={"type": "static", "stride": 4})
    small.load_state_dict(model.state_dict())
    torch.testing.assert_close(small(ids).logits, real, rtol=0, atol=1e-5)


def test_window_mask_matches_reference():
    from bltx.model.window_attention import window_mask

    m = window_mask(7, 3, "cpu")
    ref = torch.tensor([[0 <= i - j < 3 for j in range(7)] for i in range(7)])
    assert torch.equal(m, ref)


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_flex_backend_forward_matches_sdpa():
    pytest.importorskip("torch.nn.attention.flex_attention")
    model = make(attention="sdpa")
    flex = make(attention="flex")
    flex.load_state_dict(model.state_dict())
    ids = rand_ids()
    with torch.no_grad():  # FlexAttention has no CPU backward
        out = flex(ids).logits
        ref = model(ids).logits
    torch.testing.assert_close(out, ref, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize(
    "table, match",
    [
        ({"decoder": {"type": "local", "dim": 64, "n_heads": 2}}, "model.decoder.dim .64. must equal model.encoder.dim .32."),
        ({"attention": "flash9"}, "unknown attention backend 'flash9'"),
        ({"latent": {"type": "mamba"}}, "unknown latent 'mamba'"),
        ({"encoder": {"type": "local", "dim": 30, "n_heads": 4}}, "divisible by n_heads"),
        ({"encoder": {"type": "local", "dimm": 32}}, "unknown key 'model.encoder.dimm'"),
        ({"patcher": {"type": "entropy", "rule": "monotonic"}}, "needs relative_threshold"),
        ({"max_patches": 0}, "model.max_patches = 0: must be >= 1"),
    ],
)
def test_bad_config_is_one_line_config_error(table, match):
    with pytest.raises(ConfigError, match=match) as info:
        build("model", tiny_table(**table), where="model")
    assert "\n" not in str(info.value)


def test_default_tables_validate():
    from bltx.registry import validate

    cfg = validate("model", {"type": "blt"}, "model")
    assert isinstance(cfg, BLT.Config)


def test_hash_embedder_bag_equals_one_lookup_per_slice():
    """The embedder's single bag lookup gives the per-slice lookups' sum (the released BLT's
    and HF's formulation), forward and table gradient, with two hash functions."""
    import torch.nn.functional as F

    from bltx.model.embedder import HashNgramEmbedder

    torch.manual_seed(0)
    emb = HashNgramEmbedder(HashNgramEmbedder.Config(ngram_sizes=[2, 3, 5], hash_vocab=97, hash_functions=2), 16)
    emb.init_weights()
    ids = torch.randint(4, 260, (3, 40))
    weight = emb.hash_table.weight
    reference = emb.byte_table(ids) + sum(F.embedding(r, weight) for r in emb.hash_ids(ids))
    got = emb(ids)
    torch.testing.assert_close(got, reference, rtol=1e-6, atol=1e-6)
    grad_out = torch.randn_like(got)
    (want,) = torch.autograd.grad(reference, weight, grad_out)
    (have,) = torch.autograd.grad(got, weight, grad_out)
    torch.testing.assert_close(have, want, rtol=1e-5, atol=1e-6)
    assert int((want != 0).any(-1).sum()) > 97  # rows of several slices were hit
