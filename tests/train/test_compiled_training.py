"""A compiled run of the real tiny recipe through the real Trainer equals the eager run, and
one graph serves every batch although each batch has its own patch count (the patch axis is
a dynamic size of the compile unit, `BLT.forward_patched`; nothing is padded)."""

import json
from pathlib import Path

import pytest
import torch

from bltx.config import load_recipe
from bltx.train.trainer import Trainer
from helpers import ROOT

STEPS = 20


def run(tmp_path: Path, compiled: bool) -> list[dict]:
    dump = tmp_path / ("compiled" if compiled else "eager")
    recipe = load_recipe(ROOT / "recipes" / "tiny.toml", [
        f"training.steps={STEPS}", 'training.dtype="float32"', "metrics.log_interval=1",
        "metrics.tensorboard=false", "metrics.progress_bar=false", "eval.interval=0",
        "checkpoint.enable=false", f'job.dump_dir="{dump}"', f"compile.enable={str(compiled).lower()}",
        'compile.scope="model"',
    ])
    Trainer(recipe).fit()
    rows = [json.loads(line) for line in (dump / "metrics.jsonl").read_text().splitlines()]
    return [r for r in rows if r.get("split") == "train"]


@pytest.mark.filterwarnings("ignore")
def test_compiled_tiny_recipe_matches_eager_over_20_steps_with_one_graph(tmp_path):
    eager = run(tmp_path, compiled=False)
    torch._dynamo.reset()
    graphs_before = torch._dynamo.utils.counters["stats"]["unique_graphs"]
    compiled = run(tmp_path, compiled=True)
    graphs = torch._dynamo.utils.counters["stats"]["unique_graphs"] - graphs_before
    assert [r["step"] for r in compiled] == list(range(1, STEPS + 1))
    for e, c in zip(eager, compiled):
        assert abs(e["loss"] - c["loss"]) < 1e-4, (e["step"], e["loss"], c["loss"])
    # The batches really had different patch counts, and still one graph was compiled.
    assert len({round(r["mean_patch_length"], 6) for r in compiled}) > 1
    assert graphs == 1, f"{graphs} graphs for {STEPS} steps: the patch axis recompiled"
