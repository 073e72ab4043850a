"""CUTE runner (bltx/eval/cute.py): data format, prompts, exact-match scoring."""

from pathlib import Path

import pytest
import torch

import bltx
from bltx.eval.cute import TEMPLATES, few_shot_prompt, load_task, run_cute

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data" / "cute"


def write_task(folder: Path) -> Path:
    rows = ["input1\tlabel", "the\tt h e", "and\ta n d", "cat\tc a t", "of\to f"]
    (folder / "spell.tsv").write_text("\n".join(rows) + "\n")
    return folder


def test_prompts_and_loading(tmp_path):
    examples = load_task(write_task(tmp_path), "spell")
    assert examples[0].question == 'Spell "the" with spaces between letters.' and examples[0].answer == "t h e"
    prompt = few_shot_prompt(examples[:2], examples[2])
    assert prompt.endswith('Q: Spell "cat" with spaces between letters. A: ') and prompt.count("\n") == 2


@pytest.mark.skipif(not SHARED.is_dir(), reason="CUTE data not at ../shared/data/cute")
def test_every_shared_task_has_a_template():
    for path in SHARED.glob("*.tsv"):
        examples = load_task(SHARED, path.stem)
        assert len(examples) > 10 and all(ex.answer for ex in examples[:10])
    assert {p.stem for p in SHARED.glob("*.tsv")} <= set(TEMPLATES)


def test_run_cute_scores_greedy_answers(tmp_path):
    torch.set_num_threads(1)
    torch.manual_seed(0)
    model = bltx.build_model({"type": "byte_transformer", "dim": 32, "n_layers": 1, "n_heads": 2})
    scores = run_cute(model, write_task(tmp_path), n=2, shots=2)
    assert set(scores) == {"spell"} and scores["spell"]["n"] == 2
    assert 0.0 <= scores["spell"]["accuracy"] <= 1.0


def test_bad_task_is_a_clear_error(tmp_path):
    with pytest.raises(bltx.DataError, match="unknown CUTE task"):
        load_task(tmp_path, "nope")
    with pytest.raises(bltx.DataError, match="no CUTE file"):
        load_task(tmp_path, "spell")
