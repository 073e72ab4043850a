"""Hash n-gram embedder, forward + backward: one lookup per (hash function, n) slice of the
one fused table, summed (the HF port's formulation, and bltx before), against the product's
single bag lookup (`HashNgramEmbedder.sum_rows`). Each per-slice lookup's backward builds a
dense gradient of the whole table, so its cost grows with the table's rows x slices; the
bag builds one. Same weights, outputs checked equal. Prints a table, writes JSON.

    python tools/bench_embedder.py              # the small bench shape and BLT-1B's table rows
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bltx.model.embedder import HashNgramEmbedder  # noqa: E402
from tools.table import print_table  # noqa: E402

# name -> (ngram sizes, hash_vocab, dim, batch, seq_len)
SHAPES = {
    # bench_train --shape small: the tiny recipe's tables at local width 256
    "small": ([3, 4, 5, 6], 4096, 256, 2, 1024),
    # BLT-1B's table rows (500,002 x n = 3..8), at width 256 to fit a 24 GiB CPU machine
    "blt1b_rows": ([3, 4, 5, 6, 7, 8], 500002, 256, 2, 4096),
}


def per_slice(embedder: HashNgramEmbedder, ids: torch.Tensor) -> torch.Tensor:
    """The reference: one embedding lookup per slice, summed."""
    h = embedder.byte_table(ids)
    with torch.no_grad():
        rows = embedder.hash_ids(ids)
    for r in rows:
        h = h + F.embedding(r, embedder.hash_table.weight)
    return h


def time_fwd_bwd(fn, embedder, ids, reps: int) -> float:
    best = float("inf")
    for i in range(reps + 1):  # the first run warms up
        embedder.zero_grad(set_to_none=True)
        start = time.perf_counter()
        out = fn(embedder, ids)
        out.backward(torch.ones_like(out))
        if i:
            best = min(best, time.perf_counter() - start)
    return best


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shapes", nargs="+", default=list(SHAPES), choices=sorted(SHAPES))
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--out", default="runs/bench_embedder.json")
    args = parser.parse_args(argv)
    torch.manual_seed(0)
    rows = []
    for name in args.shapes:
        ngrams, vocab, dim, batch, seq_len = SHAPES[name]
        cfg = HashNgramEmbedder.Config(ngram_sizes=ngrams, hash_vocab=vocab)
        embedder = HashNgramEmbedder(cfg, dim)
        embedder.init_weights()
        ids = torch.randint(4, 260, (batch, seq_len))
        torch.testing.assert_close(embedder(ids), per_slice(embedder, ids), rtol=1e-5, atol=1e-6)
        ref = time_fwd_bwd(per_slice, embedder, ids, args.reps)
        bag = time_fwd_bwd(lambda m, x: m(x), embedder, ids, args.reps)
        rows.append({"shape": name, "table_rows": embedder.hash_table.num_embeddings, "dim": dim,
                     "slices": len(ngrams), "bytes": batch * seq_len, "per_slice_s": ref, "bag_s": bag,
                     "speedup": ref / bag})
        del embedder
    print(f"threads={torch.get_num_threads()} (forward + backward, best of {args.reps})")
    print_table(["shape", "table rows", "dim", "slices", "bytes", "per slice s", "bag s", "speedup"],
                [[r["shape"], f"{r['table_rows']:,}", str(r["dim"]), str(r["slices"]), str(r["bytes"]),
                  f"{r['per_slice_s']:.3f}", f"{r['bag_s']:.3f}", f"{r['speedup']:.1f}x"] for r in rows])
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"threads": torch.get_num_threads(), "rows": rows}, indent=2))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
