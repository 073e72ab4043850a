"""LoRA adapters, optimizer groups and FLOPs of frozen parts: in process on tiny models,
and LoRA through the CLI from a HF folder to an exported HF folder (adapters merged)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from bltx.errors import ConfigError
from bltx.model.adapters import attach_adapters, init_adapters, merge_adapters


def tiny_recipe(*overrides: str):
    import bltx

    return bltx.load_recipe("recipes/tiny.toml", ["model.patcher={type=\"static\", stride=4}", *overrides])


def test_lora_merge_equals_adapted_forward_and_fresh_adapter_is_identity():
    from bltx.model.debug import tiny_table
    from bltx.registry import build

    torch.manual_seed(0)
    model = build("model", tiny_table(), where="model").eval()
    ids = torch.randint(4, 260, (2, 24))
    ids[:, 0] = 1
    with torch.no_grad():
        ref = model(ids).logits
    names = attach_adapters(model, {"type": "lora", "rank": 2, "target": ["latent.*", "decoder.*"]})
    assert names and all(n.startswith(("latent.", "decoder.")) for n in names)
    init_adapters(model)
    with torch.no_grad():
        torch.testing.assert_close(model(ids).logits, ref, rtol=0, atol=0)  # B = 0: no change yet
        for m in model.modules():
            if hasattr(m, "b") and isinstance(m.b, nn.Parameter):
                m.b.normal_(std=0.05)
        adapted = model(ids).logits
    assert (adapted - ref).abs().max() > 1e-3
    assert merge_adapters(model) == len(names)
    assert not any(".adapter." in k for k in model.state_dict())
    with torch.no_grad():
        torch.testing.assert_close(model(ids).logits, adapted, rtol=1e-5, atol=1e-5)


def test_lora_compiles_fullgraph():
    lin = nn.Sequential(nn.Linear(8, 8), nn.Linear(8, 4))
    attach_adapters(lin, {"type": "lora", "rank": 2, "target": ["*"]})
    with torch.no_grad():
        for p in lin.parameters():
            p.normal_()
    x = torch.randn(3, 8)
    eager = lin(x)
    compiled = torch.compile(lin, fullgraph=True, backend="aot_eager")(x)
    torch.testing.assert_close(compiled, eager)
    compiled.sum().backward()
    assert lin[0].adapter.a.grad is not None


def test_bad_adapter_and_freeze_tables_are_config_errors():
    from bltx.train.finetune import build_for_training

    with pytest.raises(ConfigError, match="matches no Linear"):
        with torch.device("meta"):
            build_for_training(tiny_recipe("adapter={type=\"lora\", target=[\"nothing.*\"]}"))
    with pytest.raises(ConfigError, match="adapter.rank"):
        tiny_recipe("adapter={type=\"lora\", rank=0}")
    with pytest.raises(ConfigError, match="training.freeze: 'latnet.\\*' matches no parameter"):
        with torch.device("meta"):
            build_for_training(tiny_recipe("training.freeze=[\"latnet.*\"]"))


def test_optimizer_groups_set_lr_and_decay_and_skip_frozen():
    from bltx.train.finetune import build_for_training
    from bltx.train.optim import build_optimizer

    recipe = tiny_recipe("training.freeze=[\"encoder.*\"]", "optimizer.lr=0.01",
                         "optimizer.groups=[{match=[\"latent.*\"], lr_scale=0.1, weight_decay=0.0}]")
    model = build_for_training(recipe)
    opt = build_optimizer(model, recipe.optimizer, torch.device("cpu"))
    by_id = {id(p): n for n, p in model.named_parameters()}
    seen = set()
    for group in opt.param_groups:
        for p in group["params"]:
            name = by_id[id(p)]
            seen.add(name)
            if name.startswith("latent."):
                assert group["lr"] == pytest.approx(1e-3) and group["weight_decay"] == 0.0
            else:
                assert group["lr"] == pytest.approx(1e-2)
                assert group["weight_decay"] == (recipe.optimizer.weight_decay if p.ndim >= 2 else 0.0)
    assert not any(n.startswith(("encoder.", "patcher.")) for n in seen)
    assert any(n.startswith("decoder.") for n in seen)
    with pytest.raises(ConfigError, match="optimizer.groups\\[0\\].match"):
        build_optimizer(model, tiny_recipe("optimizer.groups=[{match=[\"nope\"]}]").optimizer, torch.device("cpu"))


def test_training_flops_count_frozen_parts_as_they_run():
    from bltx.eval.flops import flops_per_byte
    from bltx.train.finetune import build_for_training

    full = build_for_training(tiny_recipe())
    frozen = build_for_training(tiny_recipe("training.freeze=[\"latent.*\"]"))
    first = build_for_training(tiny_recipe("training.freeze=[\"byte_embedder.*\"]"))
    fwd = flops_per_byte(full, 4.0, 256)
    f_full, f_frozen, f_first = (flops_per_byte(m, 4.0, 256, training=True) for m in (full, frozen, first))
    assert f_full["latent"] == pytest.approx(3 * fwd["latent"])
    # A frozen latent between trained local models: forward + the backward through it.
    assert f_frozen["latent"] == pytest.approx(2 * fwd["latent"])
    assert f_frozen["decoder"] == pytest.approx(3 * fwd["decoder"])
    # The first part, frozen: nothing flows back into it.
    assert f_first["byte_embedder"] == pytest.approx(fwd["byte_embedder"])
