"""Generation speed: bltx cached vs. bltx full recomputation vs. Hugging Face
`BltForCausalLM.generate` (use_cache=False, as HF's BLT requires), same weights (via
bltx.interop.hf), greedy, in one run on one machine. Prints a table, writes JSON.

    python tools/bench_generate.py                       # 256 and 1024 bytes, tiny-recipe shapes
    python tools/bench_generate.py --lengths 64 --out /tmp/gen.json

The model is randomly initialised (speed does not depend on the weights) with entropy
patching in the loop; the threshold is set between the prompt's middle entropies so patches
have mixed sizes. All three paths must produce the same bytes; the table says if they do.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import bltx  # noqa: E402
from bltx.bytes import encode  # noqa: E402
from bltx.infer import SamplingConfig, generate  # noqa: E402
from bltx.interop.hf import to_hf  # noqa: E402

PROMPT = "First Citizen:\nBefore we proceed any further, hear me speak.\n"


def bench_model(threshold: float | None = None) -> torch.nn.Module:
    table = {
        "type": "blt",
        "patcher": {
            "type": "entropy",
            "threshold": threshold if threshold is not None else 1.335,
            "model": {"type": "transformer", "dim": 64, "n_layers": 2, "n_heads": 4, "window": 512},
        },
        "byte_embedder": {"type": "hash_ngram", "ngram_sizes": [3, 4, 5, 6, 7, 8], "hash_vocab": 4096},
        "encoder": {"type": "local", "dim": 64, "n_layers": 1, "n_heads": 4, "cross_attn_k": 2,
                    "window": 512, "cross_attn_repool": True},
        "latent": {"type": "transformer", "dim": 192, "n_layers": 3, "n_heads": 4},
        "decoder": {"type": "local", "dim": 64, "n_layers": 2, "n_heads": 4, "cross_attn_k": 2,
                    "window": 512},
    }
    torch.manual_seed(0)
    model = bltx.build_model(table)
    model.init_weights()
    return model.eval()


def timed(fn):
    start = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - start


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lengths", type=int, nargs="+", default=[256, 1024])
    parser.add_argument("--out", default="runs/bench_generate.json")
    parser.add_argument("--skip-hf", action="store_true", help="skip the Hugging Face row")
    args = parser.parse_args(argv)

    probe = bench_model()
    ids = encode(PROMPT, bos=True)
    # Halfway between the two middle entropies of the prompt: mixed patch sizes, and no
    # entropy sits exactly on the threshold (where float rounding would decide the boundary).
    ent = probe.patcher.entropies(ids[None])[0].sort().values
    mid = len(ent) // 2
    threshold = float(ent[mid - 1 : mid + 1].mean())
    model = bench_model(threshold)
    hf = None if args.skip_hf else to_hf(model).eval()
    greedy = SamplingConfig(allow_eos=False)

    rows = []
    for n in args.lengths:
        cached, t_cached = timed(lambda: generate(model, [ids], n, sampling=greedy)[0])
        full, t_full = timed(lambda: generate(model, [ids], n, sampling=greedy, use_cache=False)[0])
        row = {"new_bytes": n, "cached_s": t_cached, "recompute_s": t_full,
               "cached_bytes_per_s": n / t_cached, "recompute_bytes_per_s": n / t_full,
               "same_output": cached.tolist() == full.tolist()}
        if hf is not None:
            def run_hf():
                # HF's BLT cannot generate with its cache; forbid the special ids like bltx does.
                with torch.no_grad():
                    return hf.generate(ids[None], max_new_tokens=n, min_new_tokens=n, do_sample=False,
                                       use_cache=False, bad_words_ids=[[0], [1], [2], [3]])[0, len(ids):]
            hf_out, t_hf = timed(run_hf)
            row.update(hf_s=t_hf, hf_bytes_per_s=n / t_hf, hf_same_output=hf_out.tolist() == cached.tolist())
        rows.append(row)

    print(f"threads={torch.get_num_threads()}  prompt={len(ids)} ids  model params={model.num_params()['total']:,}")
    head = f"{'new bytes':>9} | {'bltx cached B/s':>15} | {'bltx recompute B/s':>18} | {'HF generate B/s':>15} | {'cached/recompute':>16} | {'cached/HF':>9} | same"
    print(head)
    print("-" * len(head))
    for r in rows:
        hf_bps = r.get("hf_bytes_per_s")
        same = r["same_output"] and r.get("hf_same_output", True)
        hf_text = f"{hf_bps:.1f}" if hf_bps else "-"
        vs_hf = f"{r['cached_bytes_per_s'] / hf_bps:.1f}x" if hf_bps else "-"
        vs_full = r["cached_bytes_per_s"] / r["recompute_bytes_per_s"]
        print(
            f"{r['new_bytes']:>9} | {r['cached_bytes_per_s']:>15.1f} | {r['recompute_bytes_per_s']:>18.1f} | "
            f"{hf_text:>15} | {vs_full:>15.1f}x | {vs_hf:>9} | {'yes' if same else 'NO'}"
        )
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"threads": torch.get_num_threads(), "rows": rows}, indent=2))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
