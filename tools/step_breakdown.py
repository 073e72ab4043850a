"""Where an eager BLT training step spends its time, component by component.

One eager forward with hooks records every component's inputs and outputs; then each part
is timed alone on those tensors: forward + backward (with random output gradients) for the
byte embedder, local encoder, latent and local decoder, the loss forward + backward on the
logits, the optimizer step, and the entropy model's forward (the patcher is frozen; in a
step with realtime patching it runs once on the batch). Parts are timed apart, so their
sum only approximates a whole step (`bench_train.py` prints both).
"""

from __future__ import annotations

import time

import torch

PARTS = ("byte_embedder", "encoder", "latent", "decoder")


def _best_of(fn, reps: int, device) -> float:
    best = float("inf")
    for i in range(reps + 1):  # the first run warms up
        if device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize()
        if i:
            best = min(best, time.perf_counter() - start)
    return best


def _leaf(x):
    return x.detach().requires_grad_() if torch.is_tensor(x) and x.is_floating_point() else x


def _as_tuple(x):
    return x if isinstance(x, tuple) else (x,)


def step_breakdown(model, ids, starts, loss_fn, optimizer, autocast, reps: int = 3) -> dict[str, float]:
    """Seconds per part of one training step of `model` (a bltx BLT) on `ids`/`starts`."""
    device = ids.device
    seen: dict[str, tuple] = {}
    hooks = [getattr(model, name).register_forward_hook(
        lambda mod, args, out, name=name: seen.__setitem__(name, (args, out))) for name in PARTS]
    try:
        with autocast:
            logits = model(ids, starts=starts).logits
    finally:
        for h in hooks:
            h.remove()
    times = {}
    with torch.no_grad():
        times["entropy_model"] = _best_of(lambda: model.patch(ids, include_next=True), reps, device)
    for name in PARTS:
        module = getattr(model, name)
        args, out = seen[name]
        grads = [torch.randn_like(o) for o in _as_tuple(out) if o.is_floating_point()]

        def run(module=module, args=args, grads=grads):
            with autocast:
                outs = [o for o in _as_tuple(module(*map(_leaf, args))) if o.is_floating_point()]
            torch.autograd.backward(outs, [g.to(o.dtype) for g, o in zip(grads, outs)])

        times[name] = _best_of(run, reps, device)

    def loss_step():
        loss_fn(logits.detach().requires_grad_(), ids).backward()

    times["loss"] = _best_of(loss_step, reps, device)
    optimizer.zero_grad(set_to_none=True)
    with autocast:
        loss = loss_fn(model(ids, starts=starts).logits, ids)
    loss.backward()
    # AdamW is not idempotent, but its cost does not depend on the values: time it as is.
    times["optimizer"] = _best_of(optimizer.step, reps, device)
    optimizer.zero_grad(set_to_none=True)
    return times
