"""The `show_data` task: what training will read, before spending compute on it.

    python -m bltx.run recipes/tiny.toml --set 'data.paths=["corpus.jsonl"]' --set job.task=show_data

Prints every source (files, format, documents, bytes, windows per split), the first
training windows exactly as the model reads them (the first step's batch, from the same
sampler the trainer uses) as text, with document boundaries marked `<|bos|>` / `<|eos|>` and
bytes that are not printable escaped (`\\xNN`), the bytes trained on between ⟦ ⟧ when the loss
leaves some out (`data.loss_on = "completion"`), and the mixture's realised proportions over
the run's `training.steps` x `training.grad_accum` batches (the first 10,000 at most)
against the weights.
"""

from __future__ import annotations

import unicodedata

import numpy as np

from bltx.bytes import BOS_ID, EOS_ID, OFFSET, PAD_ID
from bltx.data.loader import build_data_for_recipe
from bltx.data.mixture import MixtureSampler
from bltx.registry import register
from bltx.sections import Recipe

MARKS = {BOS_ID: "<|bos|>", EOS_ID: "<|eos|>", PAD_ID: "<|pad|>"}
# Around the runs of bytes whose prediction the loss counts (fine-tuning completions).
TRAINED = ("\u27e6", "\u27e7")  # ⟦ ⟧
# Windows shown: the first step's batch, at most this many.
MAX_WINDOWS = 8
# Batches whose source draws are counted for the realised mixture (the run's, up to this).
MAX_DRAWS = 10_000


def _printable(ch: str) -> str:
    if ch in "\n\t" or (ch.isprintable() and unicodedata.category(ch) != "Co"):
        return ch
    code = ord(ch)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}"


def render(ids: np.ndarray, trained: np.ndarray | None = None) -> str:
    """Ids as text: UTF-8 where it decodes, `\\xNN` for other bytes, marks for BOS/EOS/PAD
    (a run of PAD once, with its count); with `trained` (bool per id), the runs of ids the
    loss counts between TRAINED marks."""
    out, run = [], bytearray()
    flags = [True] * len(ids) if trained is None else [bool(t) for t in trained]
    values, inside, pads = ids.tolist(), False, 0

    def flush():
        text = run.decode("utf-8", errors="backslashreplace")
        out.append("".join(map(_printable, text)))
        run.clear()

    for pos, i in enumerate(values):
        if trained is not None and flags[pos] != inside:
            flush()
            out.append(TRAINED[0] if flags[pos] else TRAINED[1])
            inside = flags[pos]
        if i == PAD_ID and pos + 1 < len(values) and values[pos + 1] == PAD_ID:
            pads += 1  # shown once, at the run's last PAD
            continue
        if i >= OFFSET:
            run.append(i - OFFSET)
            continue
        flush()
        out.append(MARKS.get(i, f"<|id {i}|>") + (f"x{pads + 1}" if pads else ""))
        pads = 0
    flush()
    if inside:
        out.append(TRAINED[1])
    return "".join(out)


def _what(cfg, src) -> str:
    """Where a record's bytes come from."""
    if cfg is None or cfg.records == "text":
        return f"text field '{src.spec.text_field}'"
    if cfg.records == "chat":
        return f"chat examples from '{cfg.messages_field}', loss on {cfg.loss_on}"
    return f"examples '{cfg.prompt_field}' + '{cfg.completion_field}', loss on {cfg.loss_on}"


def describe_sources(data, cfg=None) -> list[str]:
    lines = []
    for src in data.sources:
        kinds = sorted({f.kind for f in src.files})  # document files, bltx/protocols.py
        docs = sum(int(f.num_docs) for f in src.files)
        n_bytes = sum(len(f) for f in src.files)
        train = len(src.train) if src.train is not None else 0
        val = len(src.validation) if src.validation is not None else 0
        lines.append(f"source '{src.spec.name}' (weight {src.spec.weight:g}, {_what(cfg, src)}): "
                     f"{len(src.files)} file(s), {'/'.join(kinds)}, {docs} documents, {n_bytes} bytes; "
                     f"{train} train and {val} validation windows")
    return lines


@register("task", "show_data")
def show_data(recipe: Recipe) -> int:
    cfg = recipe.data
    data = build_data_for_recipe(recipe)
    print(f"data: {len(data.sources)} source(s), windows of {cfg.seq_len} bytes, batch {cfg.batch_size}, "
          f"{len(data.stream)} ids in the stream (bytes plus BOS/EOS per document)")
    for line in describe_sources(data, cfg):
        print(line)
    batches = data.train_batches(cfg.batch_size, recipe.job.seed)
    batches.prefetch = 0
    pairs = batches.sampler.next_pairs()[:MAX_WINDOWS]
    masked = cfg.loss_on != "all"
    print(f"\nthe first {len(pairs)} training windows as the model reads them "
          f"(<|bos|>/<|eos|> mark document boundaries; \\xNN: a byte that is not printable text"
          + (f"; {TRAINED[0]} {TRAINED[1]}: the bytes trained on" if masked else "") + "):")
    for s, i in pairs:
        window = data.sources[int(s)].train.window(int(i))
        ids = window[0]
        # trained[j]: the target at id j counts (bltx/data/packing.py); id 0 is never a target.
        trained = window[2][:-1] if masked and len(window) > 2 else None
        print(f"\n--- window {int(i)} of source '{data.names[int(s)]}' ---")
        print(render(ids[:-1], trained))
    sampler = batches.sampler
    steps = min(recipe.training.steps * recipe.training.grad_accum, MAX_DRAWS)
    if isinstance(sampler, MixtureSampler) and steps > 0:
        realised = sampler.realised(steps)
        parts = [f"{n} {r:.3f} (weight {p:.3f})" for n, r, p in zip(data.names, realised, sampler.p)]
        print(f"\nmixture over {steps} batches of {cfg.batch_size}: " + ", ".join(parts))
    else:
        print(f"\nmixture: one source ('{data.names[0]}'), every window")
    return 0
