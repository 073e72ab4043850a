"""`generate`: prompts in, bytes out, with caches when the model allows it.

    outs = generate(model, ["Once upon", "To be"], max_new_bytes=200, temperature=0.0)

The cached path (the model's own session, `model.new_session`, bltx/model/sessions/: prefill,
then one byte per row through each component's cache protocol) and full recomputation
(`infer/recompute.py`) give the same greedy output; recomputation is used when the model has
no session or a component lacks the protocol (or the patcher peeks at the byte it patches),
with one notice naming the component. This file only orchestrates: sampling, stopping,
streaming; the session keeps the patch or chunk bookkeeping.
"""

from __future__ import annotations

import sys
from typing import Callable

import torch

from bltx.bytes import BOS_ID, PAD_ID, encode
from bltx.infer.recompute import generate_recompute
from bltx.infer.sampling import SamplingConfig, sample_next
from bltx.infer.speculative import generate_speculative, speculative_support
from bltx.infer.stopping import StopChecker
from bltx.protocols import has

_warned: set[str] = set()


def _notice_once(message: str) -> None:
    if message not in _warned:
        _warned.add(message)
        print(f"note: {message}", file=sys.stderr)


def to_prompt_ids(prompt: str | bytes | torch.Tensor, add_bos: bool = True) -> torch.Tensor:
    if isinstance(prompt, torch.Tensor):
        return prompt.long()
    ids = encode(prompt, bos=add_bos)
    if len(ids) == 0:
        ids = torch.tensor([BOS_ID])  # an empty prompt still needs one position to predict from
    return ids


@torch.no_grad()
def generate(
    model: torch.nn.Module,
    prompts: list[str | bytes | torch.Tensor],
    max_new_bytes: int = 256,
    sampling: SamplingConfig | None = None,
    stop: list[str | bytes] = (),
    use_cache: bool = True,
    add_bos: bool = True,
    seed: int | None = None,
    on_byte: Callable[[int, int], None] | None = None,
    compile: bool | str = "auto",
    speculative_k: int = 0,
    speculative_stats=None,
) -> list[torch.Tensor]:
    """Generate after each prompt; returns the new ids per prompt (stop bytes included).

    `on_byte(row, id)` streams each generated id as soon as it is chosen. `compile`: run the
    cached decode steps under torch.compile (True / False / "auto": on CUDA only, where it
    wins; see `use_compile`). `speculative_k` > 0: one prompt at a time, draft up to k bytes
    with the entropy patcher's model and verify them in one pass (infer/speculative.py; same
    greedy bytes); `speculative_stats` (a SpeculativeStats) collects its acceptance."""
    sampling = sampling or SamplingConfig()
    was_training = model.training
    model.eval()
    try:
        ids = [to_prompt_ids(p, add_bos) for p in prompts]
        device = next(model.parameters()).device
        generator = torch.Generator(device=device).manual_seed(seed) if seed is not None else None
        checker = StopChecker(list(stop), len(ids))
        reason = session_unsupported(model) if use_cache else "use_cache = False"
        if reason is not None:
            if use_cache:
                _notice_once(f"generating by full recomputation: {reason}")
            return generate_recompute(model, ids, max_new_bytes, sampling, checker, generator, on_byte)
        if speculative_k:
            why = speculative_support(model)
            if why is None:
                return [generate_speculative(model, p, max_new_bytes, sampling, StopChecker(list(stop), 1),
                                             generator, _row_stream(on_byte, row), speculative_k, speculative_stats)
                        for row, p in enumerate(ids)]
            _notice_once(f"plain cached decoding: {why}")
        return _generate_cached(model, ids, max_new_bytes, sampling, checker, generator, on_byte,
                                use_compile(compile, device))
    finally:
        model.train(was_training)


def session_unsupported(model) -> str | None:
    """None when `model` generates with caches (it offers `new_session`), else the reason."""
    if not has(model, "sessions"):
        return f"{type(model).__name__} has no cached session (bltx/protocols.py `sessions`)"
    return model.session_unsupported()


def _row_stream(on_byte, row: int):
    return None if on_byte is None else (lambda _, byte: on_byte(row, byte))


def use_compile(flag: bool | str, device: torch.device) -> bool:
    """"auto" compiles on CUDA only: on the 2-core CPU of the README's table the compiled
    steps run 2.5x faster per byte but compiling them takes about 3 minutes, more than a
    generation of a few thousand bytes saves (tools/bench_generate.py)."""
    if flag == "auto":
        return device.type == "cuda"
    if isinstance(flag, str):
        if flag not in ("on", "off"):
            raise ValueError(f"compile must be true, false, \"on\", \"off\" or \"auto\", got {flag!r}")
        return flag == "on"
    return bool(flag)


def _generate_cached(model, prompts, max_new_bytes, sampling, stop, generator, on_byte, compiled=False):
    """Prefill all prompts at once (right-padded), then one byte per row per step: sample,
    `feed` (the new bytes and the session's boundary flags reach the host in one transfer,
    the one sync per byte), record, `advance` (the session's patch or chunk work), decode."""
    batch = len(prompts)
    ids, lengths = _padded(prompts, next(model.parameters()).device)
    session = model.new_session(batch, ids.shape[1] + max_new_bytes, compiled)
    logits = session.prefill(ids, lengths)
    outputs: list[list[int]] = [[] for _ in range(batch)]
    for step in range(max_new_bytes):
        nxt = sample_next(logits, sampling, generator)
        opens = session.feed(nxt)
        new, flags = torch.stack([nxt, opens.long()]).tolist()
        _record(new, outputs, stop, on_byte)
        if stop.all_done or step == max_new_bytes - 1:
            break
        session.advance(opens, flags)
        logits = session.decode()
    return [torch.tensor(o, dtype=torch.long) for o in outputs]


def _record(new: list[int], outputs: list[list[int]], stop: StopChecker, on_byte) -> None:
    """Append each running row's new byte, stream it, and update the stop rules."""
    for row, byte in enumerate(new):
        if stop.done[row]:
            continue
        outputs[row].append(byte)
        if on_byte is not None:
            on_byte(row, byte)
        stop.update(row, byte)


def _padded(prompts: list[torch.Tensor], device) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-padded prompt ids [B, T] and their lengths [B]."""
    ids = torch.full((len(prompts), max(len(p) for p in prompts)), PAD_ID, dtype=torch.long, device=device)
    for row, p in enumerate(prompts):
        ids[row, : len(p)] = p.to(device)
    return ids, torch.tensor([len(p) for p in prompts], device=device)
