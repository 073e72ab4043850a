"""CUTE (character-level understanding) runner: few-shot prompts, greedy decoding through
`bltx.infer.generate`, exact match. Data: one TSV per task (header `input1 ... label`), as in
`../shared/data/cute` (spell.tsv, del_char.tsv, swap_word.tsv, ...).

    scores = run_cute(model, "../shared/data/cute", tasks=["spell", "del_char"], n=50, shots=4)
    python -m bltx.run RECIPE --set job.task=cute --set eval.path=../shared/data/cute --set eval.steps=50

The first `shots` rows of a task are its in-context examples; the next `n` rows are scored.
Each example is one line "Q: <instruction> A: <answer>"; the model's answer is what it
generates after "A: " up to a newline.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

import torch

from bltx.errors import DataError
from bltx.protocols import has

# Instruction per task; fields are the TSV's input columns.
TEMPLATES = {
    "spell": 'Spell "{input1}" with spaces between letters.',
    "spell_inverse": 'Join the letters "{input1}" into a word.',
    "contains_char": 'Does "{input2}" contain the letter "{input1}"?',
    "contains_word": 'Does "{input2}" contain the word "{input1}"?',
    "del_char": 'Delete every "{input1}" from "{input2}".',
    "del_word": 'Delete every word "{input1}" from "{input2}".',
    "ins_char": 'Add "{input1}" after every "{input2}" in "{input3}".',
    "ins_word": 'Add the word "{input1}" after every word "{input2}" in "{input3}".',
    "orth": 'Which of "{input2}" and "{input3}" is spelled closer to "{input1}"?',
    "sem": 'Which of "{input2}" and "{input3}" is closer in meaning to "{input1}"?',
    "sub_char": 'Replace every "{input1}" with "{input2}" in "{input3}".',
    "sub_word": 'Replace every word "{input1}" with "{input2}" in "{input3}".',
    "swap_char": 'Swap "{input1}" and "{input2}" in "{input3}".',
    "swap_word": 'Swap the words "{input1}" and "{input2}" in "{input3}".',
}


@dataclass
class CuteExample:
    question: str
    answer: str


def load_task(data_dir: str | Path, task: str) -> list[CuteExample]:
    path = Path(data_dir) / f"{task}.tsv"
    if task not in TEMPLATES:
        raise DataError(f"unknown CUTE task '{task}'; known: {', '.join(sorted(TEMPLATES))}")
    if not path.is_file():
        raise DataError(f"no CUTE file {path}; point eval.path / --data at the folder of the task TSVs")
    with path.open(newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f, delimiter="\t", quoting=csv.QUOTE_NONE))
    if not rows or "label" not in rows[0]:
        raise DataError(f"{path}: expected a TSV with a header ending in 'label'")
    return [CuteExample(TEMPLATES[task].format(**r), r["label"]) for r in rows]


def few_shot_prompt(shots: list[CuteExample], query: CuteExample) -> str:
    lines = [f"Q: {ex.question} A: {ex.answer}" for ex in shots]
    return "\n".join(lines + [f"Q: {query.question} A: "])


@torch.no_grad()
def run_task(model: torch.nn.Module, examples: list[CuteExample], n: int = 50, shots: int = 4,
             batch_size: int = 8) -> dict:
    """Exact-match accuracy of greedy answers on examples[shots : shots + n]."""
    from bltx.infer.generate import generate
    from bltx.infer.sampling import SamplingConfig

    context, queries = examples[:shots], examples[shots: shots + n]
    if not queries:
        raise DataError(f"a CUTE task needs more than {shots} rows")
    # Models whose non-final logits are not predictions (the BPE baseline) read only the
    # last position, which right-padded batches do not give them: one prompt at a time.
    if has(model, "whole_tokens"):
        batch_size = 1
    max_new = max(len(q.answer.encode()) for q in queries) + 8
    correct, outputs = 0, []
    for i in range(0, len(queries), batch_size):
        chunk = queries[i: i + batch_size]
        prompts = [few_shot_prompt(context, q) for q in chunk]
        gens = generate(model, prompts, max_new_bytes=max_new, sampling=SamplingConfig(temperature=0.0),
                        stop=["\n"])
        for q, g in zip(chunk, gens):
            from bltx.bytes import decode

            answer = decode(g).split("\n")[0].strip()
            correct += int(answer == q.answer.strip())
            outputs.append({"question": q.question, "expected": q.answer, "got": answer})
    return {"accuracy": correct / len(queries), "n": len(queries), "examples": outputs[:5]}


def run_cute(model: torch.nn.Module, data_dir: str | Path, tasks: list[str] | None = None,
             n: int = 50, shots: int = 4, batch_size: int = 8) -> dict[str, dict]:
    """{task: {"accuracy", "n", "examples"}} for each task (all TSVs found by default)."""
    if tasks is None:
        tasks = sorted(p.stem for p in Path(data_dir).glob("*.tsv") if p.stem in TEMPLATES)
        if not tasks:
            raise DataError(f"no CUTE task files in {data_dir}")
    return {t: run_task(model, load_task(data_dir, t), n, shots, batch_size) for t in tasks}
