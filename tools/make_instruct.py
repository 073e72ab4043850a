"""Make a small instruction set from the bundled Shakespeare corpus, for the fine-tuning
example (recipes/finetune/, README "Fine-tuning from pretrained weights").

    python tools/make_instruct.py [OUT_DIR]      # default runs/instruct

Writes OUT_DIR/train.jsonl and OUT_DIR/heldout.jsonl, one `{"prompt", "completion"}` example
per line, of two kinds:

    {"prompt": "Who speaks next?\\nROMEO:\\nO, she doth teach the torches...\\n", "completion": "JULIET:\\n"}
    {"prompt": "Complete the line: What light through yonder", "completion": " window breaks?\\n"}

"Who speaks next?" shows one speech and asks for the name of the speaker after it (a
cast of a scene, learnable from the text: a speaker often answers the one before);
"Complete the line:" gives the first words of a verse line and asks for the rest. Speeches
are split by their place in the corpus: those starting in the last 5% of its bytes (the
demo's own validation split, text the demo model never trained on) give the held-out
examples, the rest the training ones, so a held-out score is measured on unseen text.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bltx.bundled import bundled_path  # noqa: E402
from bltx.errors import DataError  # noqa: E402

HELD_OUT_FRACTION = 0.05  # toml_configs/data/tiny_shakespeare.toml's validation_fraction
MAX_SPEECH_BYTES = 160  # the tail of a long speech: prompts fit the demo's 256-byte windows


def speeches(text: str) -> list[tuple[str, str, int]]:
    """(speaker, speech, UTF-8 byte offset of the block) in corpus order: a block is a
    `NAME:` line, then its lines."""
    out, offset = [], 0
    for block in text.split("\n\n"):
        head, _, body = block.strip("\n").partition("\n")
        if head.endswith(":") and body.strip() and len(head) < 40:
            out.append((head[:-1], body, offset))
        offset += len(block.encode("utf-8")) + 2
    return out


def last_lines(speech: str, budget: int) -> str:
    """The speech's last whole lines within `budget` bytes (at least its last line)."""
    lines = speech.splitlines()
    kept = [lines.pop()]
    while lines and len("\n".join([lines[-1], *kept])) <= budget:
        kept.insert(0, lines.pop())
    return "\n".join(kept)


def who_speaks_next(pairs: list[tuple[str, str]]) -> list[dict]:
    examples = []
    for (speaker, speech, _), (following, _, _) in zip(pairs, pairs[1:]):
        speech = last_lines(speech, MAX_SPEECH_BYTES)
        examples.append({"prompt": f"Who speaks next?\n{speaker}:\n{speech}\n", "completion": f"{following}:\n"})
    return examples


def complete_the_line(pairs: list[tuple[str, str]], rng: random.Random) -> list[dict]:
    examples = []
    for _, speech, _ in pairs:
        for line in speech.splitlines():
            words = line.split(" ")
            if len(words) < 6 or len(line) > 80:
                continue
            cut = rng.randint(2, len(words) - 3)
            examples.append({"prompt": "Complete the line: " + " ".join(words[:cut]),
                             "completion": " " + " ".join(words[cut:]) + "\n"})
    return examples


def make(out_dir: Path, seed: int = 0) -> dict[str, int]:
    text = bundled_path("tiny_shakespeare", ".txt", DataError).read_text(encoding="utf-8")
    pairs = speeches(text)
    # The demo's validation split is the corpus's last 5% of bytes: held-out speeches start
    # there, so no held-out prompt or answer is text the demo model trained on.
    # (+2: the stream the split cuts also holds the document's BOS and EOS)
    first_held_out = (len(text.encode("utf-8")) + 2) * (1 - HELD_OUT_FRACTION) + 2
    split = next(i for i, (_, _, offset) in enumerate(pairs) if offset >= first_held_out)
    rng = random.Random(seed)
    out_dir.mkdir(parents=True, exist_ok=True)
    counts = {}
    for name, part in (("train", pairs[:split]), ("heldout", pairs[split:])):
        examples = who_speaks_next(part) + complete_the_line(part, rng)
        rng.shuffle(examples)
        path = out_dir / f"{name}.jsonl"
        tmp = path.with_suffix(".jsonl.tmp")
        tmp.write_text("".join(json.dumps(e) + "\n" for e in examples), encoding="utf-8")
        tmp.replace(path)
        counts[name] = len(examples)
    return counts


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("out_dir", nargs="?", default="runs/instruct")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    counts = make(Path(args.out_dir), args.seed)
    print(f"wrote {args.out_dir}/train.jsonl ({counts['train']} examples) and "
          f"{args.out_dir}/heldout.jsonl ({counts['heldout']} examples)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
