"""`generate`: prompts in, bytes out, with caches when the model allows it.

    outs = generate(model, ["Once upon", "To be"], max_new_bytes=200, temperature=0.0)

The cached path (`infer/cached.py`) and full recomputation (`infer/recompute.py`) give the same
greedy output; recomputation is used when the model has no cached step (a patcher that peeks
at the byte it patches, or a plugin encoder/latent/decoder), with a one-time notice.
"""

from __future__ import annotations

import sys
from typing import Callable

import torch

from bltx.bytes import BOS_ID, encode
from bltx.infer.cached import CachedBLTGenerator, cached_support
from bltx.infer.recompute import generate_recompute
from bltx.infer.sampling import SamplingConfig, sample_next
from bltx.infer.stopping import StopChecker

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
) -> list[torch.Tensor]:
    """Generate after each prompt; returns the new ids per prompt (stop bytes included).

    `on_byte(row, id)` streams each generated id as soon as it is chosen."""
    sampling = sampling or SamplingConfig()
    was_training = model.training
    model.eval()
    try:
        ids = [to_prompt_ids(p, add_bos) for p in prompts]
        device = next(model.parameters()).device
        generator = torch.Generator(device=device).manual_seed(seed) if seed is not None else None
        checker = StopChecker(list(stop), len(ids))
        reason = cached_support(model) if use_cache else "use_cache = False"
        if reason is not None:
            if use_cache:
                _notice_once(f"generating by full recomputation: {reason}")
            return generate_recompute(model, ids, max_new_bytes, sampling, checker, generator, on_byte)
        return _generate_cached(model, ids, max_new_bytes, sampling, checker, generator, on_byte)
    finally:
        model.train(was_training)


def _generate_cached(model, prompts, max_new_bytes, sampling, stop, generator, on_byte):
    """Lockstep over positions: row b is fed its prompt while s < len(prompt b), then its own
    samples; logits are sampled only where they predict a byte after the prompt."""
    device = next(model.parameters()).device
    batch = len(prompts)
    lengths = torch.tensor([len(p) for p in prompts], device=device)
    capacity = int(lengths.max()) + max_new_bytes
    gen = CachedBLTGenerator(model, batch, capacity)
    prompt_buf = torch.zeros(batch, capacity, dtype=torch.long, device=device)
    for row, p in enumerate(prompts):
        prompt_buf[row, : len(p)] = p.to(device)
    outputs: list[list[int]] = [[] for _ in range(batch)]
    feed = prompt_buf[:, 0]
    for s in range(capacity - 1):
        logits = gen.step(s, feed)
        predicting = s + 1 >= lengths  # logits at s predict byte s+1
        sampled = sample_next(logits, sampling, generator)
        for row in torch.nonzero(predicting).flatten().tolist():
            if stop.done[row] or len(outputs[row]) >= max_new_bytes:
                continue
            token = int(sampled[row])
            outputs[row].append(token)
            if on_byte is not None:
                on_byte(row, token)
            stop.update(row, token)
        if all(stop.done[r] or len(outputs[r]) >= max_new_bytes for r in range(batch)):
            break
        feed = torch.where(s + 1 < lengths, prompt_buf[:, s + 1], sampled)
    return [torch.tensor(o, dtype=torch.long) for o in outputs]
