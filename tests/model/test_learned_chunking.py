"""Learned (H-Net style) chunking: ratio loss, STE gradients, deterministic and causal
boundaries, training toward the target chunk length, checkpoints, generation, FLOPs."""

from __future__ import annotations

import copy

import pytest
import torch

import bltx
from bltx.config import load_recipe
from bltx.model import learned_blt as _learned  # noqa: F401  (registers the model)
from bltx.model.chunking import cap_starts, ratio_loss, ste
from helpers import TINY_LEARNED, read_metrics, write_recipe


def tiny(latent: str = "transformer", seed: int = 0, **chunker):
    table = copy.deepcopy(TINY_LEARNED)
    if latent == "recurrent":
        table["latent"] = {"type": "recurrent", "dim": 48, "n_layers": 2}
    table["chunker"].update(chunker)
    torch.manual_seed(seed)
    return bltx.build_model(table)


def test_ratio_loss_matches_a_hand_computed_case():
    # N = 4, F = 0.5, G = 0.4: 4/3 * (3 * 0.5 * 0.4 + 0.5 * 0.6) = 4/3 * 0.9 = 1.2
    assert ratio_loss(torch.tensor(0.5), torch.tensor(0.4), 4.0).item() == pytest.approx(1.2)
    # optimum 1 at F = G = 1/N
    assert ratio_loss(torch.tensor(0.25), torch.tensor(0.25), 4.0).item() == pytest.approx(1.0)
    # F = 0.2, G = 0.1, N = 3: 3/2 * (2 * 0.02 + 0.8 * 0.9) = 1.5 * 0.76 = 1.14
    assert ratio_loss(torch.tensor(0.2), torch.tensor(0.1), 3.0).item() == pytest.approx(1.14)


def test_ste_is_one_forward_and_passes_the_gradient():
    c = torch.tensor([0.2, 0.7], requires_grad=True)
    x = torch.tensor([3.0, -2.0])
    y = ste(c)
    assert torch.equal(y.detach(), torch.ones(2))
    (y * x).sum().backward()
    assert torch.equal(c.grad, x)


def test_language_model_gradient_reaches_the_router_through_the_ste():
    model = tiny()
    torch.nn.init.normal_(model.chunker.up.weight, std=0.05)  # as after a few steps (it starts at 0)
    ids = torch.randint(4, 260, (2, 40))
    h = model.encoder.encode_bytes(model.byte_embedder(ids))
    p = model.chunker.probabilities(h.detach()).detach().requires_grad_(True)
    starts = cap_starts(p >= 0.5, 40)
    patch_ids = starts.long().cumsum(-1) - 1
    from bltx.model.chunking import chunk_start_positions

    P = int(starts.sum(-1).max())
    zhat = torch.randn(2, P, 48)
    _, u = model.chunker.dechunk(zhat, p, starts, patch_ids, chunk_start_positions(patch_ids, P))
    u.pow(2).sum().backward()
    # The EMA reads p at chunk starts only: a gradient at a non-start comes from the STE.
    assert (p.grad[~starts].abs() > 0).any()
    # And end to end, the language-model loss alone (no ratio loss) trains W_q and W_k.
    logits = model(ids).logits
    torch.nn.functional.cross_entropy(logits.reshape(-1, 260), ids.roll(-1, 1).reshape(-1)).backward()
    assert model.chunker.wq.weight.grad.abs().sum() > 0
    assert model.chunker.wk.weight.grad.abs().sum() > 0


def test_eval_boundaries_are_deterministic_and_match_the_forward():
    model = tiny().eval()
    ids = torch.randint(4, 260, (3, 64))
    with torch.no_grad():
        a, b = model.patch(ids), model.patch(ids)
        assert torch.equal(a, b) and a[:, 0].all()
        first = model(ids)
        realised = first.starts  # what the engine counts chunks from (no second pass)
        out2 = model(ids, starts=model.patch(ids, include_next=True)).logits
    assert torch.equal(first.logits, out2) and torch.equal(realised, a)
    assert 0 < float(first.stats["boundary_rate"]) <= 1


@pytest.mark.parametrize("latent", ["transformer", "recurrent"])
def test_causal_end_to_end_with_the_learned_chunker_in_the_loop(latent):
    model = tiny(latent, seed=1).eval()
    # Static chunk axis: the latent's shapes never depend on the data, so "unchanged" is
    # exact (eager sizing to the real chunk count differs by rounding noise only).
    model.static_patch_axis = True
    g = torch.Generator().manual_seed(0)
    T = 48
    ids = torch.randint(4, 260, (2, T), generator=g)
    with torch.no_grad():
        ref = model(ids).logits
        for t in (0, 5, 17, 30, T - 2):
            changed = ids.clone()
            changed[:, t + 1:] = torch.randint(4, 260, (2, T - t - 1), generator=g)
            out = model(changed).logits
            assert torch.equal(out[:, : t + 1], ref[:, : t + 1]), f"logits at <= {t} moved"
            assert torch.equal(model.patch(changed)[:, : t + 1], model.patch(ids)[:, : t + 1])


def test_chunk_cap_keeps_static_axis_and_eager_equal():
    model = tiny().eval()
    model.max_patches = 6  # far fewer than the router opens: the cap decides
    ids = torch.randint(4, 260, (2, 40))
    with torch.no_grad():
        eager = model(ids).logits
        model.static_patch_axis = True
        static = model(ids).logits
    assert model.patch(ids).sum(-1).max() <= 6
    assert torch.allclose(eager, static, atol=1e-5)


def test_flops_count_realised_chunk_lengths():
    from bltx.eval.flops import flops_per_byte

    model = tiny()
    at4, at8 = flops_per_byte(model, 4.0, 256), flops_per_byte(model, 8.0, 256)
    assert {"encoder", "chunker", "latent", "decoder"} <= set(at4)
    assert at8["latent"] < at4["latent"] and at8["total"] < at4["total"]
    assert flops_per_byte(model, 4.0, 256, training=True)["total"] == pytest.approx(3 * at4["total"])


def test_generation_is_the_greedy_choice_on_each_prefix():
    from bltx.infer.generate import generate

    model = tiny().eval()
    out = generate(model, ["To be", "or"], max_new_bytes=6)
    for prompt, new in zip(["To be", "or"], out):
        ids = bltx.bytes.encode(prompt, bos=True)
        for byte in new.tolist():  # each generated byte is the greedy choice on its prefix
            with torch.no_grad():
                assert int(model(ids[None]).logits[0, -1].argmax()) == byte
            ids = torch.cat([ids, torch.tensor([byte])])


def test_training_moves_chunk_length_to_target_and_checkpoint_round_trips(tmp_path):
    from bltx.checkpoint import find_checkpoint
    from bltx.train.trained import load_trained_model
    from bltx.train.trainer import Trainer

    model = copy.deepcopy(TINY_LEARNED)
    model["chunker"] = {"type": "cosine", "target_length": 8.0, "ratio_loss_weight": 1.0}
    path = write_recipe(tmp_path, model=model, training={"steps": 40},
                        checkpoint={"interval": 40}, metrics={"log_interval": 5})
    recipe = load_recipe(path)
    trainer = Trainer(recipe)
    trainer.fit()
    rows = read_metrics(tmp_path / "run")
    assert {"ratio_loss", "boundary_rate", "boundary_prob"} <= set(rows[-1])
    first, last = rows[0]["mean_patch_length"], rows[-1]["mean_patch_length"]
    assert abs(last - 8.0) < abs(first - 8.0) and abs(last - 8.0) < 0.25 * 8.0, (first, last)
    # Round trip: the saved checkpoint gives the trained model's logits.
    loaded = load_trained_model(recipe, find_checkpoint(tmp_path / "run"), torch.device("cpu"))
    ids = torch.randint(4, 260, (2, 64))
    trainer.model.eval()
    with torch.no_grad():
        assert torch.equal(loaded(ids).logits, trainer.model(ids).logits)
        assert torch.equal(loaded.patch(ids), trainer.model.patch(ids))


def test_forward_traces_as_one_graph_and_returns_its_extras():
    # fullgraph=True fails on any graph break (.item(), data-dependent branching); the
    # "eager" backend checks the trace without paying for code generation on CPU.
    model = tiny()
    model.static_patch_axis = True
    ids = torch.randint(4, 260, (2, 40))
    ref = model(ids)
    out = torch.compile(model, fullgraph=True, backend="eager")(ids)
    torch.testing.assert_close(out.logits, ref.logits, rtol=0, atol=1e-5)
    assert set(out.aux_losses) == {"ratio_loss"} and "boundary_rate" in out.stats
    torch.testing.assert_close(out.aux_losses["ratio_loss"], ref.aux_losses["ratio_loss"])
    assert torch.equal(out.starts, model.patch(ids))
    # Nothing rides on the module: the model holds no per-forward attributes.
    assert not {"aux_losses", "step_stats", "last_starts"} & set(vars(model))


def test_ratio_loss_with_the_batch_rate_is_the_same_on_any_data_split():
    """Data parallel: each rank sees part of the batch. With the batch's boundary rate F
    (chunker.batch_mean, set where the batch is sharded) the ranks' mean ratio loss and its
    gradient equal the whole batch's; with each rank's own F they do not."""
    model = tiny(seed=4, ratio_loss_weight=1.0).train()
    ids = torch.randint(4, 260, (4, 48))

    def ratio_and_grad(parts, batch_mean):
        model.zero_grad()
        model.chunker.batch_mean = batch_mean
        total = sum(model(part).aux_losses["ratio_loss"] for part in parts) / len(parts)
        total.backward()
        return total.detach(), model.chunker.wq.weight.grad.clone()

    whole, g_whole = ratio_and_grad([ids], None)
    with torch.no_grad():
        rate = model.patch(ids).float().mean()
    split, g_split = ratio_and_grad([ids[:1], ids[1:2], ids[2:3], ids[3:]], lambda local: rate)
    torch.testing.assert_close(split, whole)
    torch.testing.assert_close(g_split, g_whole)
    local, _ = ratio_and_grad([ids[:1], ids[1:2], ids[2:3], ids[3:]], None)
    assert not torch.allclose(local, whole)
    model.chunker.batch_mean = None


def test_an_encoder_without_two_stages_is_refused_in_one_line():
    from bltx.errors import ConfigError

    table = copy.deepcopy(TINY_LEARNED)
    table["encoder"] = {**table["encoder"], "type": "local"}  # BLT's pooling encoder: one stage
    with pytest.raises(ConfigError, match=r"model.encoder: LocalEncoder does not fulfil the staged_encoder contract .*missing: downsample, encode_bytes .*use type = \"byte_layers\""):
        bltx.build_model(table)
