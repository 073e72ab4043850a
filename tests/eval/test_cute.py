"""CUTE runner (bltx/eval/cute.py): data format, prompts, exact-match scoring."""

from pathlib import Path

import pytest
import torch

import bltx
from bltx.eval.cute import TEMPLATES, few_shot_prompt, load_task, run_cute
from bltx.model.output import lm_output
from helpers import ROOT

SHARED = ROOT.parent / "shared" / "data" / "cute"


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


class ScriptedModel(torch.nn.Module):
    """A byte model that answers from a table, not from weights: after the last "A: " of
    its input it emits `answer(question)` then a newline. An independent reference for
    the runner: the oracle must score 1.0 and a model with wrong answers 0.0."""

    predicts_whole_tokens = True  # reads the last position only, like the BPE baseline

    def __init__(self, answer):
        super().__init__()
        self.answer = answer
        self.anchor = torch.nn.Parameter(torch.zeros(()))  # a device and dtype to follow

    def forward(self, ids, targets=None, **ignored):
        logits = torch.full((*ids.shape, 260), -1e4)
        for row, seq in enumerate(ids.tolist()):
            text = bytes(i - 4 for i in seq if i >= 4).decode("latin-1")
            question, _, sofar = text.rpartition("Q: ")[2].partition(" A: ")
            target = (self.answer(question) + "\n").encode("latin-1")
            nxt = target[len(sofar.encode("latin-1"))] if len(sofar) < len(target) else ord("\n")
            logits[row, :, nxt + 4] = 0.0
        return lm_output(logits + self.anchor, targets)


def oracle_answers(folder: Path):
    return {ex.question: ex.answer for ex in load_task(folder, "spell")}


def test_scripted_oracle_scores_one_and_wrong_model_zero(tmp_path):
    folder = write_task(tmp_path)
    truth = oracle_answers(folder)
    right = run_cute(ScriptedModel(truth.get), folder, n=2, shots=2)["spell"]
    wrong = run_cute(ScriptedModel(lambda q: truth[q] + "x"), folder, n=2, shots=2)["spell"]
    assert right["accuracy"] == 1.0 and right["n"] == 2
    assert wrong["accuracy"] == 0.0 and wrong["examples"][0]["got"] == wrong["examples"][0]["expected"] + "x"


def test_bad_task_is_a_clear_error(tmp_path):
    with pytest.raises(bltx.DataError, match="unknown CUTE task"):
        load_task(tmp_path, "nope")
    with pytest.raises(bltx.DataError, match="no CUTE file"):
        load_task(tmp_path, "spell")
