"""Two local lm-eval multiple-choice tasks from the bundled corpus's validation tail (the
last 5%, which the tiny recipes never train on), written as task YAML + JSONL:

- shakespeare_cloze: 160 bytes of context and the first half of a line; choose the line's
  real second half or the second half of another line (needs some sense of the text).
- shakespeare_scrambled: the same contexts; choose the real second half or the same bytes
  with the letters of each word shuffled (needs only spelling: a sanity check).

    python tools/make_cloze_tasks.py runs/cloze_tasks
    python -m bltx.run recipes/tiny.toml --set job.task=lm_eval --set lm_eval.include_path=runs/cloze_tasks \
        --set 'lm_eval.tasks=["shakespeare_cloze", "shakespeare_scrambled"]' --set lm_eval.include_defaults=false
"""

from __future__ import annotations

import json
import random
import sys
from pathlib import Path

CORPUS = Path(__file__).resolve().parent.parent / "bltx" / "data" / "corpora" / "tiny_shakespeare.txt"
YAML = """task: {name}
dataset_path: json
dataset_kwargs:
  data_files:
    test: {data}
test_split: test
output_type: multiple_choice
doc_to_text: "{{{{context}}}}"
doc_to_choice: "{{{{choices}}}}"
doc_to_target: "{{{{label}}}}"
target_delimiter: ""
metric_list:
  - metric: acc
    aggregation: mean
    higher_is_better: true
  - metric: acc_norm
    aggregation: mean
    higher_is_better: true
metadata:
  version: 1.0
"""


def second_half(line: str) -> tuple[str, str]:
    cut = len(line) // 2
    while cut < len(line) and line[cut] != " ":
        cut += 1
    return line[:cut], line[cut:]


def items(n: int = 100, seed: int = 0) -> tuple[list[dict], list[dict]]:
    text = CORPUS.read_text(encoding="utf-8")
    tail = text[int(len(text) * 0.95) :]
    lines = tail.split("\n")
    starts = [sum(len(x) + 1 for x in lines[:i]) for i in range(len(lines))]
    usable = [i for i, line in enumerate(lines) if len(line) >= 30 and not line.endswith(":") and i > 3]
    rng = random.Random(seed)
    cloze, scrambled = [], []
    for i in rng.sample(usable, n):
        head, right = second_half(lines[i])
        context = tail[max(0, starts[i] - 160) : starts[i]] + head
        other = second_half(lines[rng.choice([j for j in usable if j != i])])[1]
        shuffled = " ".join("".join(rng.sample(w, len(w))) for w in right.split(" "))
        for rows, wrong in ((cloze, other), (scrambled, shuffled if shuffled != right else right[::-1])):
            label = rng.randint(0, 1)
            rows.append({"context": context, "choices": [right, wrong][:: 1 - 2 * label], "label": label})
    return cloze, scrambled


def main() -> None:
    out = Path(sys.argv[1] if len(sys.argv) > 1 else "runs/cloze_tasks").resolve()
    out.mkdir(parents=True, exist_ok=True)
    for name, rows in zip(("shakespeare_cloze", "shakespeare_scrambled"), items()):
        data = out / f"{name}.jsonl"
        data.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
        (out / f"{name}.yaml").write_text(YAML.format(name=name, data=data), encoding="utf-8")
    print(f"wrote shakespeare_cloze and shakespeare_scrambled (100 items each) to {out}")


if __name__ == "__main__":
    main()
