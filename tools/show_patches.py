"""Show how a model patches a text: per-byte entropy, the threshold and patch boundaries as a
PNG (like the BLT paper's "Daenerys Targaryen..." figure), and the text split into patches
in the terminal.

    python tools/show_patches.py --recipe recipes/tiny.toml --text "Daenerys Targaryen is in Game of Thrones"
    python tools/show_patches.py --checkpoint runs/compare/blt_entropy --text "..." --out patches.png

`--checkpoint` is a checkpoint folder or a run folder (its newest checkpoint); without
`--recipe` the recipe saved beside the checkpoint is used. Without `--checkpoint` the
recipe's model is built as is: enough for patchers that load their own weights (the
entropy patcher's checkpoint) or need none (static, space, bpe).

The entropy drawn at byte t is H(x_t), the entropy of the prediction of byte t made from
the bytes before it: the entropy model's for the entropy patcher, else the model's own
next-byte distribution. A patch starts at byte t when H(x_t) exceeds the threshold.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

from bltx.errors import BltxError, ConfigError  # noqa: E402


def load_model(recipe_path: str | None, checkpoint: str | None, overrides: list[str],
               plugins: list[str] = ()):
    import bltx
    from bltx.config import load_recipe

    ckpt = None
    saved = False
    if checkpoint:
        from bltx.checkpoint import find_checkpoint

        ckpt = find_checkpoint(Path(checkpoint))
        if recipe_path is None:
            beside = ckpt / "recipe.toml" if ckpt.is_dir() else None
            if beside is None or not beside.is_file():
                raise ConfigError(f"no recipe.toml beside {ckpt}; pass --recipe")
            recipe_path, saved = str(beside), True
    if recipe_path is None:
        raise ConfigError("give --recipe, --checkpoint or both")
    # A checkpoint's own recipe imports only the plugins named with --plugin (bltx/config.py).
    recipe = load_recipe(recipe_path, overrides, saved=saved, plugins=plugins)
    if ckpt is not None:
        from bltx.train.trained import load_trained_model

        return load_trained_model(recipe, ckpt, torch.device("cpu")), recipe
    torch.manual_seed(recipe.job.seed)
    return bltx.build_model(recipe).eval(), recipe


@torch.no_grad()
def analyse(model, text: str) -> dict:
    """{"bytes": [...], "starts": [bool per byte], "entropy": [H(x_t) per byte], "threshold"}."""
    from bltx.bytes import encode
    from bltx.model.entropy_model import entropy_from_logits
    from bltx.patching.entropy import EntropyPatcher
    from bltx.protocols import has

    ids = encode(text, bos=True)[None]
    patcher = model.patcher if has(model, "patcher") else None
    out = model(ids)  # the patching the model runs, and its next-byte logits
    if patcher is not None and has(patcher, "entropies"):
        ent = patcher.entropies(ids)
        source = "entropy model"
    else:
        ent = entropy_from_logits(out.logits)
        source = "model next-byte entropy"
    starts = out.starts if out.starts is not None else torch.ones_like(ids, dtype=torch.bool)
    # Learned chunking (bltx/model/learned_blt.py): also the router's boundary probability
    # p_t, drawn against its 0.5 decision line.
    p = model.boundary_probabilities(ids)[0, 1: ids.shape[1]].float().tolist() if has(model, "learned_chunks") else None
    # Byte t (position t >= 1 after BOS): H(x_t) was computed at position t-1.
    return {
        "bytes": list(text.encode("utf-8")),
        "starts": starts[0, 1: ids.shape[1]].tolist(),
        "entropy": ent[0, : ids.shape[1] - 1].float().tolist(),
        "threshold": patcher.threshold if isinstance(patcher, EntropyPatcher) else None,
        "source": source,
        "p": p,
    }


def split_patches(info: dict) -> list[bytes]:
    patches: list[bytearray] = []
    for b, s in zip(info["bytes"], info["starts"]):
        if s or not patches:
            patches.append(bytearray())
        patches[-1].append(b)
    return [bytes(p) for p in patches]


def draw(info: dict, out: Path, title: str = "") -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = len(info["bytes"])
    fig, ax = plt.subplots(figsize=(max(6.0, 0.22 * n), 3.2), dpi=120)
    xs = list(range(n))
    ax.plot(xs, info["entropy"], marker="o", markersize=3, linewidth=1, label=f"H(x_t), {info['source']}")
    if info["threshold"] is not None:
        ax.axhline(info["threshold"], color="tab:red", linestyle="--", linewidth=1,
                   label=f"threshold {info['threshold']:.2f}")
    for x, s in zip(xs, info["starts"]):
        if s:
            ax.axvline(x - 0.5, color="tab:gray", linewidth=0.8, alpha=0.6)
    labels = [chr(b) if 32 < b < 127 else ("␣" if b == 32 else "·") for b in info["bytes"]]
    ax.set_xticks(xs)
    ax.set_xticklabels(labels, fontsize=7)
    ax.set_xlim(-0.7, n - 0.3)
    ax.set_ylabel("entropy (nats)")
    if info.get("p") is not None:
        ax2 = ax.twinx()
        ax2.plot(xs, info["p"], color="tab:green", marker=".", markersize=3, linewidth=1, label="p_t (router)")
        ax2.axhline(0.5, color="tab:green", linestyle=":", linewidth=1)
        ax2.set_ylim(0, 1)
        ax2.set_ylabel("boundary probability p_t")
        ax2.legend(fontsize=7, loc="upper left")
    ax.set_title(title or f"{sum(info['starts'])} patches, {n} bytes (gray lines: patch starts)", fontsize=9)
    ax.legend(fontsize=7, loc="upper right")
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--recipe", default=None)
    ap.add_argument("--checkpoint", default=None)
    ap.add_argument("--text", required=True)
    ap.add_argument("--out", default="patches.png")
    ap.add_argument("--set", action="append", default=[], dest="overrides")
    ap.add_argument("--plugin", action="append", default=[], dest="plugins", metavar="MODULE",
                    help="a plugin module the checkpoint's saved recipe needs (never imported unasked)")
    args = ap.parse_args(argv)
    try:
        if not args.text:
            raise ConfigError("--text is empty")
        model, _ = load_model(args.recipe, args.checkpoint, args.overrides, args.plugins)
        info = analyse(model, args.text)
        patches = split_patches(info)
        print(" | ".join(p.decode("utf-8", errors="replace").replace("\n", "\\n") for p in patches))
        print(f"{len(patches)} patches, {len(info['bytes'])} bytes, mean {len(info['bytes']) / len(patches):.2f} bytes/patch")
        draw(info, Path(args.out))
        print(f"wrote {args.out}")
    except BltxError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:  # an --out that cannot be written, a file that vanished
        from bltx.run import os_error_text

        print(f"error: {os_error_text(exc)}; fix that and run again", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
