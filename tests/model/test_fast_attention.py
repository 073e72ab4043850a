"""Fast attention paths equal their dense references, forward and backward (grads of q, k, v):
blocked sliding-window self-attention and the patch-local cross-attention layouts."""

import pytest
import torch
import torch.nn.functional as F

from bltx.model.attention import SdpaBackend, run_attention
from bltx.model.debug import tiny_table
from bltx.model.local_encoder import patch_query_groups
from bltx.model.patch_attention import PatchKeys, PatchQueries
from bltx.model.window_attention import BlockedWindow, blocked_window_mask, window_mask
from bltx.patching.base import starts_to_patch_ids
from bltx.registry import build

TOL = dict(rtol=1e-5, atol=1e-5)


def qkv(B, H, Hkv, Lq, Lkv, D=8, seed=0):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(B, h, L, D, generator=g, requires_grad=True)
            for h, L in ((H, Lq), (Hkv, Lkv), (Hkv, Lkv))]


def out_and_grads(fn, q, k, v):
    out = fn(q, k, v)
    g = torch.Generator().manual_seed(1)
    out.backward(torch.randn(out.shape, generator=g))
    grads = [x.grad.clone() for x in (q, k, v)]
    for x in (q, k, v):
        x.grad = None
    return out.detach(), grads


def assert_same(fast, ref, q, k, v):
    out, grads = out_and_grads(fast, q, k, v)
    rout, rgrads = out_and_grads(ref, q, k, v)
    torch.testing.assert_close(out, rout, **TOL)
    for g, rg in zip(grads, rgrads):
        torch.testing.assert_close(g, rg, **TOL)


def dense_window(T, W):
    mask = window_mask(T, W, "cpu")
    return lambda q, k, v: F.scaled_dot_product_attention(q, k, v, attn_mask=mask, enable_gqa=q.shape[1] != k.shape[1])


@pytest.mark.parametrize("T, W", [(16, 4), (17, 4), (13, 3), (31, 8), (5, 1), (9, 4), (8, 8), (6, 10)])
@pytest.mark.parametrize("heads", [(4, 4), (4, 2)])
def test_blocked_window_equals_dense_mask(T, W, heads):
    q, k, v = qkv(2, *heads, T, T)
    blocked = blocked_window_mask(T, W, "cpu")  # also where the backend would stay dense
    assert_same(lambda q, k, v: blocked.attend(q, k, v), dense_window(T, W), q, k, v)
    # The backend's choice (blocked, dense mask or plain causal) gives the same numbers.
    backend = SdpaBackend()
    mask = backend.causal_mask(T, W, "cpu")
    assert isinstance(mask, BlockedWindow) == (2 * W < T)
    assert_same(lambda q, k, v: run_attention(backend, q, k, v, mask), dense_window(T, W), q, k, v)


def random_patches(B, T, seed, lead_unpatched=False):
    g = torch.Generator().manual_seed(seed)
    starts = torch.rand(B, T, generator=g) < 0.3
    starts[:, 0] = not lead_unpatched
    return starts_to_patch_ids(starts)


def dense_cross(q_group, kv_group):
    mask = SdpaBackend().group_mask(q_group, kv_group)
    return lambda q, k, v: SdpaBackend().attend(q, k, v, mask)


@pytest.mark.parametrize("k", [1, 2])
@pytest.mark.parametrize("heads", [(4, 4), (4, 2)])
@pytest.mark.parametrize("extra_patches, lead_unpatched", [(0, False), (3, False), (-2, False), (0, True)])
def test_encoder_patch_queries_equal_dense(k, heads, extra_patches, lead_unpatched):
    B, T = 3, 19
    patch_ids = random_patches(B, T, seed=k + extra_patches, lead_unpatched=lead_unpatched)
    # extra > 0: padding patches with no bytes; < 0: a too-small P (bytes no query reads).
    P = int(patch_ids.max()) + 1 + extra_patches
    q, kk, v = qkv(B, *heads, P * k, T)
    layout = PatchQueries.build(patch_ids, P, k)
    ref = dense_cross(patch_query_groups(B, P, k, "cpu"), patch_ids)
    assert_same(layout.attend, ref, q, kk, v)


@pytest.mark.parametrize("k", [1, 3])
@pytest.mark.parametrize("heads", [(4, 4), (4, 1)])
@pytest.mark.parametrize("extra_patches", [0, 2, -2])
def test_decoder_patch_keys_equal_dense(k, heads, extra_patches):
    B, T = 3, 19
    dec_ids = random_patches(B, T, seed=k) - 1  # -1: bytes before the first complete patch
    P = int(dec_ids.max()) + 1 + extra_patches
    q, kk, v = qkv(B, *heads, T, P * k)
    layout = PatchKeys.build(dec_ids, P, k)
    ref = dense_cross(dec_ids, patch_query_groups(B, P, k, "cpu"))
    assert_same(layout.attend, ref, q, kk, v)


def test_model_fast_paths_equal_dense_model():
    """Whole BLT, windows blocked (T = 24 > 2 * 8) and patch layouts, against dense masks."""
    def model(layout):
        torch.manual_seed(0)
        table = tiny_table()
        for part in ("encoder", "decoder"):
            table[part]["cross_attn_layout"] = layout
        return build("model", table, where="model")

    fast, ref = model("patch"), model("dense")
    ref.load_state_dict(fast.state_dict())
    ids = torch.randint(4, 260, (2, 24), generator=torch.Generator().manual_seed(3))
    out, rout = fast(ids).logits, ref(ids).logits
    torch.testing.assert_close(out, rout, **TOL)
    out.square().mean().backward()
    rout.square().mean().backward()
    rgrads = dict(ref.named_parameters())
    for name, p in fast.named_parameters():
        if p.grad is not None:
            torch.testing.assert_close(p.grad, rgrads[name].grad, rtol=1e-4, atol=1e-6, msg=name)


@pytest.mark.filterwarnings("ignore")
def test_fast_paths_compile_fullgraph():
    """One compiled graph with all three fast paths; forward and backward equal eager."""
    B, T, W, P, K = 2, 20, 4, 9, 2
    patch_ids = random_patches(B, T, seed=5)
    P = int(patch_ids.max()) + 3

    def step(q, k, v, patch_ids):
        win = blocked_window_mask(T, W, q.device).attend(q, k, v)
        queries = torch.cat([q, q], dim=2)[:, :, : P * K]
        enc = PatchQueries.build(patch_ids, P, K).attend(queries, win, v)
        dec = PatchKeys.build(patch_ids - 1, P, K).attend(win, enc, enc)
        return dec

    torch._dynamo.reset()
    compiled = torch.compile(step, fullgraph=True, dynamic=False)
    q, k, v = qkv(B, 4, 4, T, T)
    assert_same(lambda q, k, v: compiled(q, k, v, patch_ids), lambda q, k, v: step(q, k, v, patch_ids), q, k, v)
