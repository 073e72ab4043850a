"""tools/byteify_compare.py, the byteify worked example end to end (issue 23), at its
`--quick` sizes: every step runs through the commands a user runs (make_source, stage 1a,
stages 1 and 2, the scratch baseline, each evaluated), and compare.json holds what the
README reads off it, with the scratch baseline on the byteified model's FLOPs."""

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("transformers")
pytest.importorskip("tokenizers")

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_quick_compare_writes_the_comparison(tmp_path):
    out = tmp_path / "byteify"
    cmd = [sys.executable, "tools/byteify_compare.py", "--quick", "--skip-learned-spelling", "--out", str(out)]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads((out / "compare.json").read_text())
    for key in ("source_bpb", "stage1_bpb", "byteified_bpb", "scratch_bpb"):
        assert 0 < result[key] < 9 and math.isfinite(result[key]), key
    assert result["source_train_flops"] == json.loads((out / "source" / "source.json").read_text())["train_flops"]
    # The scratch baseline trains on the FLOPs of stages 1a + 1 + 2 (to a step's worth).
    assert result["byteify_train_flops"] > result["predictor_train_flops"] > 0
    assert abs(result["scratch_train_flops"] / result["byteify_train_flops"] - 1) < 0.25
    steps = result["steps"]
    assert steps["predictor"] >= 1 and steps["stage1"] >= 3 and steps["stage2"] >= 3
    b = result["held_out_boundaries"]
    for key in ("predictor_agreement", "boundary_agreement"):
        assert 0 <= b[key] <= 1, key
    # The buckets split every held-out byte, and their bits add up to the two runs' own
    # evaluations (each byte scored once, its boundary included).
    rows = b["by_distance"]
    assert sum(row["fraction"] for row in rows) == pytest.approx(1.0)
    for name, stage in (("reference", "stage1_bpb"), ("byteified", "byteified_bpb")):
        assert sum(row["fraction"] * row[f"{name}_bpb"] for row in rows) == pytest.approx(result[stage], rel=2e-3)
    # Each stage's run folder holds its evaluation; the plot is written.
    for run in ("stage1", "stage2", "scratch"):
        assert json.loads((out / run / "eval.json").read_text())["bytes"] == result["held_out_bytes"]
    assert (out / "compare.png").stat().st_size > 0
    assert result["source_vocab_size"] == 300  # QUICK_VOCAB
    # Asking for another vocabulary over that source is refused in one line, nothing rerun.
    proc = subprocess.run([*cmd, "--vocab", "512"], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        f"error: {out / 'source'} was made with --vocab 300, not 512; pass another --out (or delete that folder)"]


def test_boundary_ceiling_counts_the_tokenizers_own_boundaries(tmp_path):
    """tools/boundary_ceiling.py on a small source: its boundaries are the HF tokenizer's
    own tokens, and it writes one held-out agreement per (lookahead, history)."""
    import transformers

    from helpers import SOURCE_TEXT, save_source_folder
    from tools import boundary_ceiling

    folder, _ = save_source_folder(tmp_path / "source")
    vocab = boundary_ceiling.SourceVocab(boundary_ceiling.SourceTokenizer(folder))
    text = SOURCE_TEXT.encode()[:300]
    hf = transformers.AutoTokenizer.from_pretrained(folder)
    lengths = [len(hf.convert_tokens_to_string([t]).encode()) for t in hf.tokenize(text.decode())]
    ends = [i for i, e in enumerate(boundary_ceiling.token_ends(vocab, text)) if e]
    assert ends == [sum(lengths[: k + 1]) - 1 for k in range(len(lengths))]
    out = tmp_path / "ceiling.json"
    assert boundary_ceiling.main(["--source", str(folder), "--lookahead", "1", "2", "--history", "2",
                                  "--max-bytes", "4000", "--out", str(out)]) == 0
    rows = json.loads(out.read_text())["rows"]
    assert [(r["lookahead"], r["history"]) for r in rows] == [(1, 2), (2, 2)]
    assert all(0.5 < r["agreement"] <= 1 for r in rows)
