"""The size recipes reproduce the released BLT models: the parameter count `--dry-run`
reports equals that of Hugging Face `BltForCausalLM` built (on the meta device) from the
released configurations, written out here independently of bltx's own HF config mapping."""

import re

import pytest
import torch

from bltx.config import load_recipe
from bltx.dry_run import parameter_rows
from helpers import ROOT, run_cli

PATCHER = dict(hidden_size=768, num_hidden_layers=14, num_attention_heads=12, intermediate_size=2048)

# Released configs (facebook/blt-1b and facebook/blt-7b, HF format).
RELEASED = {
    "1b": dict(
        cross_attn_k=2,
        encoder=dict(hidden_size=1024, num_hidden_layers=1, num_attention_heads=16, intermediate_size=2816),
        global_=dict(hidden_size=2048, num_hidden_layers=25, num_attention_heads=16, intermediate_size=5632),
        decoder=dict(hidden_size=1024, num_hidden_layers=9, num_attention_heads=16, intermediate_size=2816),
    ),
    "8b": dict(
        cross_attn_k=4,
        encoder=dict(hidden_size=1280, num_hidden_layers=1, num_attention_heads=20, intermediate_size=3584),
        global_=dict(hidden_size=4096, num_hidden_layers=32, num_attention_heads=32, intermediate_size=11008),
        decoder=dict(hidden_size=1280, num_hidden_layers=6, num_attention_heads=20, intermediate_size=3584),
    ),
}


def hf_param_count(spec: dict) -> int:
    from transformers import BltConfig, BltForCausalLM

    enc, glob, dec = spec["encoder"], spec["global_"], spec["decoder"]
    config = BltConfig(
        vocab_size=260,
        cross_attn_k=spec["cross_attn_k"],
        patch_in_forward=True,
        encoder_hash_byte_group_size=[3, 4, 5, 6, 7, 8],
        encoder_hash_byte_group_vocab=500002,
        encoder_hash_byte_group_nb_functions=1,
        patcher_config=PATCHER,
        encoder_config=dict(enc, cross_attn_k=spec["cross_attn_k"], hidden_size_global=glob["hidden_size"]),
        global_config=dict(glob, hidden_size_global=glob["hidden_size"],
                           encoder_cross_output_size=enc["hidden_size"] * spec["cross_attn_k"]),
        decoder_config=dict(dec, cross_attn_k=spec["cross_attn_k"], hidden_size_global=glob["hidden_size"]),
    )
    with torch.device("meta"):
        model = BltForCausalLM(config)
    return sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize("size", ["1b", "8b"])
def test_recipe_param_count_matches_released_model(size):
    recipe = load_recipe(ROOT / "recipes" / f"{size}.toml")
    total = dict((name, t) for name, t, _ in parameter_rows(recipe))["total"]
    assert total == hf_param_count(RELEASED[size])


def test_dry_run_8b_prints_plan():
    proc = run_cli("recipes/8b.toml", "--dry-run", "--world-size", "64")
    assert proc.returncode == 0, proc.stderr
    total = int(re.search(r"^total\s+([\d,]+)", proc.stdout, re.M).group(1).replace(",", ""))
    assert total == hf_param_count(RELEASED["8b"])
    assert "FLOPs per byte" in proc.stdout and "memory per rank" in proc.stdout
    assert "dp_shard=32 tp=2" in proc.stdout


def test_8b_on_too_small_a_launch_says_what_it_needs():
    proc = run_cli("recipes/8b.toml")
    assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1
    assert "needs a multiple of 2 processes" in proc.stderr and "torchrun" in proc.stderr
    proc = run_cli("recipes/8b.toml", "--set", "parallelism.tp=1")
    assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1
    assert "GiB per rank" in proc.stderr and "--dry-run" in proc.stderr
