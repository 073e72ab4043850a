"""Convert BLT checkpoints between Hugging Face transformers and bltx.

    python tools/convert_hf.py to-bltx HF_DIR OUT_DIR   # save_pretrained folder -> model.toml + model.pt
    python tools/convert_hf.py to-hf SRC OUT_DIR        # -> save_pretrained folder; SRC: a folder of
                                                        # model.toml + model.pt, a trainer checkpoint
                                                        # or a run folder (its newest good checkpoint)

The bltx folder holds `model.toml` (a [model] table a recipe can include) and `model.pt`
(the state dict, entropy model included). Adapters (LoRA) of a run are merged into the
exported weights. Bad input ends in one line on stderr, exit 2.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bltx.errors import BltxError  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("direction", choices=["to-bltx", "to-hf"])
    parser.add_argument("src")
    parser.add_argument("dst")
    args = parser.parse_args(argv)
    from bltx.interop import hf

    try:
        if args.direction == "to-bltx":
            out = hf.convert_hf_dir(args.src, args.dst)
        else:
            from bltx.train.pretrained import export_hf

            out = export_hf(args.src, args.dst)
    except BltxError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except (OSError, ValueError) as exc:  # transformers' reading of a damaged HF folder
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        print(f"error: cannot convert {args.src}: {reason}", file=sys.stderr)
        return 2
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
