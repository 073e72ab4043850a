"""Generation by full recomputation: every new byte re-runs the whole model on the prefix.

This is what the official BLT does. It needs nothing from the model but causality, so it works
for every model and patcher; bltx uses it as the reference that the cached generator must
match byte for byte, and as the fallback for patchers that cannot decide boundaries online.

Prompts of different lengths share one right-padded buffer: because the model is causal, the
padding after a row's last byte cannot change that row's logits, so each row reads its own
last position. A model whose logits at a byte read the byte after it (the patch boundary it
settles, flag `boundary_in_nll`: bltx/protocols.py) would read the padding as that byte: it
runs one row at a time, unpadded, so its last position is one it decides without the next
byte.
"""

from __future__ import annotations

from typing import Callable

import torch

from bltx.bytes import PAD_ID
from bltx.infer.sampling import SamplingConfig, sample_next
from bltx.infer.stopping import StopChecker
from bltx.protocols import has


@torch.no_grad()
def generate_recompute(
    model: torch.nn.Module,
    prompts: list[torch.Tensor],
    max_new_bytes: int,
    sampling: SamplingConfig | None = None,
    stop: StopChecker | None = None,
    generator: torch.Generator | None = None,
    on_byte: Callable[[int, int], None] | None = None,
) -> list[torch.Tensor]:
    """Generate up to `max_new_bytes` ids after each prompt (1-D id tensors, BOS included if
    wanted). Returns the generated ids per prompt (prompt excluded, stop bytes included).
    `on_byte(row, id)` is called for each generated id, for streaming."""
    sampling = sampling or SamplingConfig()
    device = next(model.parameters()).device
    batch = len(prompts)
    lengths = [len(p) for p in prompts]
    buffer = torch.full((batch, max(lengths) + max_new_bytes), PAD_ID, dtype=torch.long, device=device)
    for row, prompt in enumerate(prompts):
        buffer[row, : len(prompt)] = prompt.to(device)
    stop = stop or StopChecker([], batch)
    outputs: list[list[int]] = [[] for _ in range(batch)]
    one_row_at_a_time = has(model, "boundary_in_nll")
    for _ in range(max_new_bytes):
        if stop.all_done:
            break
        if one_row_at_a_time:
            rows = {row: model(buffer[row: row + 1, : lengths[row]]).logits[0, -1]
                    for row in range(batch) if not stop.done[row]}
            some = next(iter(rows.values()))
            last = torch.stack([rows.get(row, torch.zeros_like(some)) for row in range(batch)])
        else:
            logits = model(buffer[:, : max(lengths)]).logits
            last = logits[torch.arange(batch, device=device), torch.tensor(lengths, device=device) - 1]
        next_ids = sample_next(last, sampling, generator).tolist()
        for row in range(batch):
            if stop.done[row]:
                continue
            buffer[row, lengths[row]] = next_ids[row]
            lengths[row] += 1
            outputs[row].append(next_ids[row])
            if on_byte is not None:
                on_byte(row, next_ids[row])
            stop.update(row, next_ids[row])
    return [torch.tensor(o, dtype=torch.long) for o in outputs]
