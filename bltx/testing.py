"""Contract checks a plugin author runs on their own part, without editing bltx's suite:

    from bltx.testing import check_part
    check_part("latent", {"type": "my_latent", "dim": 64}, plugins=["my_plugin"])

`check_part(slot, table)` puts the part in a tiny model of the kind that slot belongs to (a
BLT for patcher / byte_embedder / encoder / latent / decoder, learned chunking for chunker)
and asserts, each failure an AssertionError whose message names the part and what broke:
  - end-to-end causality with the part in the loop: the logits at byte t do not move when any
    byte after t changes (and patch starts before t do not move, for a patcher or chunker);
  - cached generation equals full recomputation (greedy bytes), where the model can cache
    with this part (else it says why it was not checked);
  - the part's `forward_flops` against what torch's FlopCounterMode counts in its forward
    (within `flop_tolerance`; elementwise work is not counted by either); for a part the model
    drives through methods other than forward (a chunker), the model's total instead.
Each check is also a function of its own (check_causal, check_cached_generation,
check_flops) that takes a built model, for parts that need a model of their own.
"""

from __future__ import annotations

import copy

import torch
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.utils.flop_counter import FlopCounterMode

from bltx.eval.flops import flops_per_byte
from bltx.infer.generate import generate, session_unsupported
from bltx.infer.sampling import SamplingConfig
from bltx.registry import build, load_plugins

_LOCAL = {"type": "local", "dim": 32, "n_layers": 1, "n_heads": 2}
TINY_MODELS = {
    "blt": {
        "type": "blt",
        "patcher": {"type": "static", "stride": 4},
        "byte_embedder": {"type": "hash_ngram", "ngram_sizes": [3, 4], "hash_vocab": 64},
        "encoder": _LOCAL,
        "latent": {"type": "transformer", "dim": 64, "n_layers": 1, "n_heads": 2},
        "decoder": _LOCAL,
    },
    "learned_blt": {
        "type": "learned_blt",
        "byte_embedder": {"type": "hash_ngram", "ngram_sizes": [3, 4], "hash_vocab": 64},
        "encoder": {"type": "byte_layers", "dim": 32, "n_layers": 1, "n_heads": 2},
        "chunker": {"type": "cosine", "target_length": 4.0},
        "latent": {"type": "transformer", "dim": 64, "n_layers": 1, "n_heads": 2},
        "decoder": _LOCAL,
    },
}
# Where a part's width comes from in the tiny model: a latent sets the latent width, local
# parts the local one (the decoder must match the encoder).
_SLOT_MODEL = {"chunker": "learned_blt"}


def tiny_model_with(slot: str, table: dict, seed: int = 0) -> torch.nn.Module:
    """A tiny float64 model of the slot's kind with `table` in `slot`, in eval mode, with
    large random weights (std 0.3) so every part shapes the output."""
    model_table = copy.deepcopy(TINY_MODELS[_SLOT_MODEL.get(slot, "blt")])
    model_table[slot] = table
    if slot in ("encoder", "decoder") and "dim" in table:  # the other local part follows
        other = "decoder" if slot == "encoder" else "encoder"
        model_table[other] = {**model_table[other], "dim": table["dim"]}
    torch.manual_seed(seed)
    model = build("model", model_table, where="model").double()
    with torch.no_grad():
        for name, p in model.named_parameters():
            if not name.startswith("patcher."):
                torch.nn.init.normal_(p, std=0.3)
    return model.eval()


@torch.no_grad()
def check_causal(model: torch.nn.Module, where: str, seq_len: int = 40, seed: int = 0) -> None:
    """Logits (and realised starts) at t never depend on bytes after t."""
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(4, 260, (2, seq_len), generator=g)
    ref = model(ids)
    for t in sorted({0, seq_len // 4, seq_len // 2, seq_len - 2}):
        changed = ids.clone()
        changed[:, t + 1:] = torch.randint(4, 260, (2, seq_len - t - 1), generator=g)
        out = model(changed)
        moved = (out.logits[:, : t + 1] - ref.logits[:, : t + 1]).abs().max().item()
        # Other future bytes change the patch count, so kernel shapes: rounding noise only.
        assert moved <= 1e-6, (
            f"{where}: not causal; the logits at byte {t} moved by {moved:.3g} when only bytes "
            f"after {t} changed (a part reads ahead: pad convolutions on the left, mask "
            f"attention causally)")
        if ref.starts is not None:
            assert torch.equal(out.starts[:, : t + 1], ref.starts[:, : t + 1]), (
                f"{where}: patch starts at or before byte {t} moved when only later bytes changed")


def check_cached_generation(model: torch.nn.Module, where: str, new_bytes: int = 24) -> str | None:
    """Cached greedy bytes = recomputation's; returns why caching was not checked, or None."""
    reason = session_unsupported(model)
    if reason is not None:
        return reason
    prompts = ["To be, or not", "A"]
    greedy = SamplingConfig(temperature=0.0)
    cached = generate(model, prompts, new_bytes, sampling=greedy, use_cache=True, compile=False)
    full = generate(model, prompts, new_bytes, sampling=greedy, use_cache=False)
    for prompt, a, b in zip(prompts, cached, full):
        assert a.tolist() == b.tolist(), (
            f"{where}: cached generation differs from recomputation after {prompt!r} "
            f"(cached {a.tolist()}, recomputed {b.tolist()}): its step disagrees with its forward")
    return None


@torch.no_grad()
def check_flops(model: torch.nn.Module, slot: str, where: str, seq_len: int = 32,
                tolerance: float = 0.05) -> None:
    """The part's forward FLOPs per byte (as the counter reports them) against FlopCounterMode
    on the model's forward, attention through SDPA's math kernel (whose matmuls it sees)."""
    ids = torch.randint(4, 260, (1, seq_len), generator=torch.Generator().manual_seed(1))
    with sdpa_kernel(SDPBackend.MATH), FlopCounterMode(display=False) as counter:
        out = model(ids)
    executed = {path.rsplit(".", 1)[-1]: sum(ops.values()) for path, ops in counter.get_flop_counts().items()}
    patch_len = seq_len / max(1, int(out.starts.sum())) if out.starts is not None else 1.0
    counted = flops_per_byte(model, patch_len, seq_len)
    ours, got, what = counted[slot] * seq_len, executed.get(slot, 0), "forward_flops says"
    if slot not in executed:
        # The model calls this part's methods, not its forward (a chunker, a staged encoder),
        # so the counter cannot attribute its work: compare the whole model's instead.
        ours, got, what = counted["total"] * seq_len, executed.get("Global", 0), "the model's FLOPs with it are"
    if got == 0 and ours == 0:
        return
    assert abs(ours - got) <= tolerance * max(got, ours), (
        f"{where}: {what} {ours:.4g} for this forward, FlopCounterMode "
        f"counted {got:.4g} (more than {tolerance:.0%} apart): count 2 per weight per row for "
        f"each matmul, attention per key a query may read (bltx/model/flop_math.py)")


def check_part(slot: str, table: dict, plugins: list[str] | tuple[str, ...] = (), *,
               flop_tolerance: float = 0.05) -> dict:
    """All contract checks for one part in its slot (see the module doc). Returns what was
    checked: {"causal": True, "cached": True or the reason it was skipped, "flops": True}."""
    load_plugins(plugins, entry_points=False)
    where = f"{slot} {table.get('type')!r}"
    model = tiny_model_with(slot, table)
    check_causal(model, where)
    skipped = check_cached_generation(model, where)
    check_flops(model, slot, where, tolerance=flop_tolerance)
    return {"causal": True, "cached": skipped or True, "flops": True}
