"""Data loader benchmark: index build and window reads for each document format.

Writes one synthetic corpus (documents of 200-6000 bytes of Shakespeare, `--mb` MB of text)
as raw files, JSONL, JSONL.zst, Parquet and an Arrow stream (`--chunk-rows` rows per row group
or record batch), then for each: the index build time (the one
pass over the file, cached afterwards) and the rate of training windows read by the
sampler the trainer uses, with a global shuffle (`data.shuffle_buffer = 0`) and a local one.
`--chunk-cache-mb` shrinks the cache of decoded Parquet/Arrow chunks (1 GiB by default) to
act out a corpus much larger than it.

    python tools/bench_data.py                 # 64 MB, seq 1024, batch 8; writes runs/bench_data.json
    python tools/bench_data.py --mb 8 --steps 20
"""

from __future__ import annotations

import argparse
import json
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from bltx.data import build_data, columnar  # noqa: E402
from bltx.sections import DataConfig  # noqa: E402
from helpers import write_corpus  # noqa: E402  (tests/helpers.py: synthetic corpora of every format)

FORMATS = {"raw": "raw", "jsonl": "jsonl", "jsonl.zst": "jsonl.zst", "parquet": "parquet", "arrow": "arrow_stream"}


def documents(mb: float, seed: int = 0) -> list[str]:
    text = (Path(__file__).resolve().parent.parent / "bltx/data/corpora/tiny_shakespeare.txt").read_text()
    rng = np.random.default_rng(seed)
    docs, total = [], 0
    while total < mb * 1e6:
        n = int(rng.integers(200, 6000))
        start = int(rng.integers(0, len(text) - n))
        docs.append(text[start : start + n])
        total += n
    return docs


def bench(path: Path, cache: Path, seq_len: int, batch: int, steps: int, shuffle: int) -> dict:
    cfg = DataConfig(paths=[str(path)], seq_len=seq_len, batch_size=batch, validation_fraction=0.0,
                     cache_dir=str(cache), shuffle_buffer=shuffle, prefetch=0)
    t0 = time.perf_counter()
    data = build_data(cfg)
    opened = time.perf_counter() - t0
    batches = data.train_batches(batch, seed=0)
    next(batches)
    t0 = time.perf_counter()
    for _ in range(steps):
        next(batches)
    seconds = time.perf_counter() - t0
    return {"open_s": opened, "windows_per_s": steps * batch / seconds,
            "bytes_per_s": steps * batch * seq_len / seconds}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--mb", type=float, default=64)
    ap.add_argument("--seq-len", type=int, default=1024)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--steps", type=int, default=40)
    ap.add_argument("--shuffle-buffer", type=int, default=8192)
    ap.add_argument("--chunk-rows", type=int, default=500, help="rows per Parquet row group / Arrow batch")
    ap.add_argument("--chunk-cache-mb", type=float, default=24)
    ap.add_argument("--out", default="runs/bench_data.json")
    args = ap.parse_args()
    columnar._chunks.max_bytes = int(args.chunk_cache_mb * 2**20)
    docs = documents(args.mb)
    root = Path(tempfile.mkdtemp(prefix="bltx_bench_data_"))
    rows = []
    try:
        for name, fmt in FORMATS.items():
            path = write_corpus(root / name.replace(".", "_"), docs, fmt, chunk=args.chunk_rows)
            cache = root / f"cache_{name}"
            first = bench(path, cache, args.seq_len, args.batch, args.steps, 0)  # builds the index
            row = {"format": name, "docs": len(docs), "index_build_s": first["open_s"]}
            for label, shuffle in (("global", 0), ("local", args.shuffle_buffer)):
                r = bench(path, cache, args.seq_len, args.batch, args.steps, shuffle)
                row["open_cached_s"] = r["open_s"]
                row[f"{label}_bytes_per_s"] = r["bytes_per_s"]
            rows.append(row)
            print(f"{name:10s} index {row['index_build_s']:6.2f}s | reopen {row['open_cached_s']:.3f}s | "
                  f"global {row['global_bytes_per_s'] / 1e6:7.2f} MB/s | "
                  f"local ({args.shuffle_buffer}) {row['local_bytes_per_s'] / 1e6:7.2f} MB/s", flush=True)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    meta = {"mb": args.mb, "seq_len": args.seq_len, "batch": args.batch, "steps": args.steps,
            "chunk_cache_mb": args.chunk_cache_mb, "chunk_rows": args.chunk_rows, "shuffle_buffer": args.shuffle_buffer,
            "machine": platform.processor() or platform.machine()}
    out.write_text(json.dumps({"config": meta, "rows": rows}, indent=1) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
