"""Numerical parity with Hugging Face transformers' BltForCausalLM (fp32, CPU).

HF models are built from small random configs and every parameter is re-randomised with
normal_ (HF zero-initialises nothing we rely on, but a wrong mapping must not hide behind
a constant), then converted with `from_hf` and compared on logits and patch boundaries.
"""

import pytest
import torch

import bltx
from helpers import ROOT, hf_config, random_hf

transformers = pytest.importorskip("transformers")
from transformers import BltForCausalLM  # noqa: E402

from bltx.errors import BltxError, CheckpointError, ConfigError  # noqa: E402
from bltx.interop import hf as interop  # noqa: E402
from bltx.patching.base import starts_to_patch_ids  # noqa: E402

T = 20


VARIANTS = ["enc_last_dec_all", "enc_all_dec_first", "k1_all_all"]


def rand_ids(B=3, seed=1):
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(4, 260, (B, T), generator=g)
    ids[:, 0] = 1
    return ids


def rand_lengths(B=3, n=7, seed=2):
    """HF convention: BOS alone in patch 0; same patch count per row (no zero padding)."""
    g = torch.Generator().manual_seed(seed)
    rows = []
    for _ in range(B):
        cuts = torch.randperm(T - 2, generator=g)[: n - 2].sort().values + 2
        bounds = torch.cat([torch.tensor([0, 1]), cuts, torch.tensor([T])])
        rows.append(bounds.diff())
    return torch.stack(rows)


@pytest.mark.parametrize("variant", VARIANTS)
def test_logits_match_hf_with_given_patch_lengths(variant):
    hf = random_hf(variant)
    model = interop.from_hf(hf).eval()
    ids, lengths = rand_ids(), rand_lengths()
    with torch.no_grad():
        ref = hf(ids, patch_lengths=lengths, use_cache=False).logits
        out = model(ids, patch_lengths=lengths).logits
    assert ref.abs().max() > 1e-2  # not a degenerate comparison
    torch.testing.assert_close(out, ref, rtol=0, atol=1e-4)


@pytest.mark.parametrize("variant", VARIANTS)
def test_realtime_entropy_patching_matches_hf(variant):
    hf = random_hf(variant)
    ids = rand_ids(B=4)
    with torch.no_grad():
        ent, _, _ = hf.model.patcher(ids, patch_size=4, threshold=0.0)
    # A threshold inside the entropy range gives mixed, row-dependent boundaries.
    hf.config.patching_threshold = float(ent.median())
    model = interop.from_hf(hf).eval()
    with torch.no_grad():
        _, hf_lengths, _ = hf.model.patcher(ids, patch_size=4, threshold=hf.config.patching_threshold)
        ref = hf(ids, use_cache=False).logits
        out = model(ids).logits
        ours_ent = model.patcher.entropies(ids)
    torch.testing.assert_close(ours_ent, ent, rtol=0, atol=1e-5)
    starts = model.patch(ids)
    assert 2 * 4 < starts.sum() < starts.numel()
    hf_patch_ids = hf.model._patch_ids_from_lengths(hf_lengths, T)
    assert torch.equal(starts_to_patch_ids(starts), hf_patch_ids)
    torch.testing.assert_close(out, ref, rtol=0, atol=1e-4)


@pytest.mark.parametrize("variant", VARIANTS)
def test_round_trip_state_dicts_equal(variant):
    hf = random_hf(variant)
    back = interop.to_hf(interop.from_hf(hf))
    a, b = hf.state_dict(), back.state_dict()
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key
    table = interop.recipe_from_hf_config(hf.config)
    assert interop.recipe_from_hf_config(interop.hf_config_from_recipe(table)) == table


def test_bltx_native_model_exports_and_reimports():
    from bltx.model.debug import tiny_table
    from bltx.registry import build

    torch.manual_seed(0)
    model = build("model", tiny_table(), where="model").eval()
    again = interop.from_hf(interop.to_hf(model))
    sd, sd2 = model.state_dict(), again.state_dict()
    assert sd.keys() == sd2.keys() and all(torch.equal(sd[k], sd2[k]) for k in sd)
    ids = rand_ids()
    torch.testing.assert_close(again(ids).logits, model(ids).logits, rtol=0, atol=0)


def test_hash_embeddings_match_hf():
    from transformers.models.blt.modeling_blt import compute_hash_embeddings

    hf = random_hf("k1_all_all")
    model = interop.from_hf(hf)
    ids = torch.randint(0, 260, (2, 33))
    c = hf.config
    with torch.no_grad():
        ref = compute_hash_embeddings(ids, hf.model.local_encoder, hf.model.encoder_hash_tok_embedding,
                                      c.encoder_hash_byte_group_nb_functions, c.encoder_hash_byte_group_size,
                                      c.encoder_hash_byte_group_vocab)
        out = model.byte_embedder(ids)
    torch.testing.assert_close(out, ref, rtol=0, atol=1e-6)


def test_convert_directories_both_ways(tmp_path):
    import importlib.util

    spec = importlib.util.spec_from_file_location("convert_hf", ROOT / "tools" / "convert_hf.py")
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)

    hf = random_hf("enc_last_dec_all")
    hf.save_pretrained(tmp_path / "hf")
    assert tool.main(["to-bltx", str(tmp_path / "hf"), str(tmp_path / "bltx")]) == 0
    assert (tmp_path / "bltx" / "model.toml").is_file()
    assert tool.main(["to-hf", str(tmp_path / "bltx"), str(tmp_path / "hf2")]) == 0
    back = BltForCausalLM.from_pretrained(tmp_path / "hf2").eval()
    ids, lengths = rand_ids(), rand_lengths()
    with torch.no_grad():
        torch.testing.assert_close(back(ids, patch_lengths=lengths, use_cache=False).logits,
                                   hf(ids, patch_lengths=lengths, use_cache=False).logits, rtol=0, atol=0)
    # Wrong inputs: one clear line, exit code 2.
    assert tool.main(["to-bltx", str(tmp_path / "nothing"), str(tmp_path / "x")]) == 2
    assert tool.main(["to-hf", str(tmp_path / "hf"), str(tmp_path / "y")]) == 2


def test_incompatible_inputs_raise_bltx_errors():
    from bltx.model.debug import tiny_table
    from bltx.registry import build

    with pytest.raises(ConfigError, match="BltForCausalLM"):
        interop.from_hf(torch.nn.Linear(2, 2))
    mono = build("model", tiny_table(patcher={"type": "entropy", "rule": "monotonic", "relative_threshold": 0.1,
                                             "model": {"type": "transformer", "dim": 16, "n_layers": 1, "n_heads": 2}}))
    with pytest.raises(ConfigError, match="patcher.rule = 'monotonic'"):
        interop.to_hf(mono)
    with pytest.raises(ConfigError, match="pooling"):
        interop.hf_config_from_recipe(tiny_table(encoder={"type": "local", "dim": 32, "n_heads": 2, "window": 8, "pooling": "mean"}))
    bad = hf_config("enc_last_dec_all")
    bad.decoder_config.hidden_size_global = 7
    with pytest.raises(ConfigError, match="hidden_size_global"):
        interop.recipe_from_hf_config(bad)
    with pytest.raises(CheckpointError):
        bltx.load("/nonexistent/folder")
    assert issubclass(CheckpointError, BltxError)
