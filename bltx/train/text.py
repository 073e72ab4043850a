"""Text in, text out on a loaded model: what `bltx.load(path)` attaches to the model.

    model = bltx.load("runs/tiny")
    model.generate("ROMEO:", max_bytes=100)       # -> the generated text (str)
    model.score("To be, or not to be")            # -> {"nll": nats, "bits": ..., "bpb": ..., "bytes": n}

Bytes are encoded and decoded here (bltx/bytes.py); scoring is the model's own forward
with targets (its ModelOutput `nll`), so it counts as training and eval do.
"""

from __future__ import annotations

import math
from types import MethodType

import torch

from bltx.bytes import decode_bytes, encode


def generate_text(model, prompt: str | bytes, max_bytes: int = 256, temperature: float = 0.0,
                  top_k: int = 0, top_p: float = 1.0, stop: list[str] = (), seed: int | None = 0) -> str:
    """Continue `prompt`; the new text (UTF-8, undecodable bytes replaced)."""
    from bltx.infer.generate import generate
    from bltx.infer.sampling import SamplingConfig

    sampling = SamplingConfig(temperature=temperature, top_k=top_k, top_p=top_p)
    out = generate(model, [prompt], max_bytes, sampling=sampling, stop=list(stop), seed=seed, compile=False)[0]
    return decode_bytes(out).decode("utf-8", errors="replace")


@torch.no_grad()
def score_text(model, text: str | bytes) -> dict[str, float]:
    """Summed next-byte NLL of `text` after BOS, in nats and bits, and bits per byte."""
    ids = encode(text, bos=True).unsqueeze(0).to(next(model.parameters()).device)
    if ids.shape[1] < 2:
        return {"nll": 0.0, "bits": 0.0, "bpb": 0.0, "bytes": 0}
    was_training = model.training
    model.eval()
    try:
        nll = model(ids[:, :-1], ids[:, 1:]).nll
    finally:
        model.train(was_training)
    n = ids.shape[1] - 1
    nats = float(nll)
    return {"nll": nats, "bits": nats / math.log(2), "bpb": nats / math.log(2) / n, "bytes": n}


def attach_text_helpers(model, recipe):
    """`model.recipe`, `model.generate(prompt, ...)` and `model.score(text)` (module doc)."""
    model.recipe = recipe
    model.generate = MethodType(generate_text, model)
    model.score = MethodType(score_text, model)
    return model
