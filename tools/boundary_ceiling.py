"""How well can any boundary predictor with k bytes of lookahead match a source tokenizer?
(issue 23; README "Byteifying a subword LM").

    python tools/boundary_ceiling.py [--source runs/byteify/source] [--lookahead 1 2 3]
        [--history 4 8] [--out runs/byteify/boundary_ceiling.json]

A byteified model decides where a patch ends from the bytes up to t + k: with k = 1 the
byte distribution stays exact (each candidate next byte fixes the boundary; bltx's
predictor), with more the model would have to carry two hypotheses per pending boundary.
This measures what k buys, independently of any trained predictor: a count table over the
h bytes up to t and the k bytes after it, majority vote on "the tokenizer ends a token
after t", backing off to fewer bytes of context (h + k; at equal length, more lookahead
first) until the key was seen at least twice in training (no key seen: "no boundary"). Trained on the corpus's first 95% (the source's training
split, tools/make_source.py), scored on the held-out last 5%: the fraction of held-out
bytes whose boundary it gets right. A table is printed and JSON written.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections import Counter
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bltx.bytes import OFFSET  # noqa: E402
from bltx.interop.byteify.vocab import SourceVocab  # noqa: E402
from bltx.interop.source_tokenizer import SourceTokenizer  # noqa: E402
from tools.make_source import split_corpus  # noqa: E402
from tools.table import print_table  # noqa: E402

MIN_COUNT = 2  # a key seen fewer times in training backs off


def token_ends(vocab: SourceVocab, text: bytes) -> np.ndarray:
    """bool [len]: the tokenizer ends a token after each byte (the last byte ends one)."""
    starts = vocab.token_starts(np.frombuffer(text, dtype=np.uint8).astype(np.int64) + OFFSET)
    return np.append(starts[1:], True)


def backoff_order(history: int, lookahead: int) -> list[tuple[int, int]]:
    """(h, k) pairs from the most bytes of context to the fewest; at equal length, more
    lookahead first."""
    pairs = [(h, k) for h in range(1, history + 1) for k in range(1, lookahead + 1)]
    return sorted(pairs, key=lambda hk: (hk[0] + hk[1], hk[1]), reverse=True)


def keys(text: bytes, t: int, order: list[tuple[int, int]]):
    """The count-table keys at byte t in backoff order: (h, k, bytes up to t, bytes after)."""
    for h, k in order:
        if t - h + 1 >= 0 and t + k < len(text):
            yield h, k, text[t - h + 1: t + 1], text[t + 1: t + 1 + k]


def agreement(train: bytes, train_ends: np.ndarray, held: bytes, held_ends: np.ndarray,
              history: int, lookahead: int) -> float:
    order = backoff_order(history, lookahead)
    table: Counter = Counter()
    for t in range(len(train) - 1):
        for key in keys(train, t, order):
            table[key, bool(train_ends[t])] += 1
    right = 0
    for t in range(len(held) - 1):
        guess = False
        for key in keys(held, t, order):
            yes, no = table[key, True], table[key, False]
            if yes + no >= MIN_COUNT:
                guess = yes > no
                break
        right += guess == bool(held_ends[t])
    return right / (len(held) - 1)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--source", default="runs/byteify/source", help="a save_pretrained folder with tokenizer.json")
    ap.add_argument("--lookahead", type=int, nargs="+", default=[1, 2, 3])
    ap.add_argument("--history", type=int, nargs="+", default=[4, 8])
    ap.add_argument("--max-bytes", type=int, default=0, help="use only this many bytes of each split (a smoke test)")
    ap.add_argument("--out", default="runs/byteify/boundary_ceiling.json")
    args = ap.parse_args(argv)
    vocab = SourceVocab(SourceTokenizer(args.source))
    train, held = (part.encode() for part in split_corpus())
    if args.max_bytes:
        train, held = train[: args.max_bytes], held[: args.max_bytes]
    train_ends, held_ends = token_ends(vocab, train), token_ends(vocab, held)
    rows, t0 = [], time.perf_counter()
    for lookahead in args.lookahead:
        for history in args.history:
            rows.append({"lookahead": lookahead, "history": history,
                         "agreement": agreement(train, train_ends, held, held_ends, history, lookahead)})
            print(f"lookahead {lookahead}, history {history}: {rows[-1]['agreement']:.4f}", flush=True)
    print_table(["lookahead (bytes)", "history (bytes)", "held-out agreement"],
                [[str(r["lookahead"]), str(r["history"]), f"{r['agreement']:.4f}"] for r in rows])
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"source": str(args.source), "held_out_bytes": len(held), "rows": rows,
                               "seconds": time.perf_counter() - t0}, indent=1) + "\n")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
