"""The `eval` task and the bits-per-byte computation."""

import json
import math

import torch

from bltx.bytes import EOS_ID, OFFSET, VOCAB_SIZE
from bltx.config import load_recipe
from bltx.model.output import lm_output
from bltx.train.loss import evaluate_bpb
from bltx.train.trainer import Trainer
from helpers import TINY_BLT, run_cli, write_recipe


class Uniform(torch.nn.Module):
    """Predicts every id with equal probability: bpb is log2(260) per predicted id."""

    def forward(self, ids, targets=None, **kw):
        return lm_output(torch.zeros(*ids.shape, VOCAB_SIZE), targets)


def test_bpb_counts_real_bytes_only():
    ids = torch.full((2, 5), OFFSET + 65)
    targets = ids.clone()
    targets[0, -1] = EOS_ID  # its cost counts, but it is not a byte
    res = evaluate_bpb(Uniform(), [{"ids": ids, "targets": targets}], torch.device("cpu"))
    assert res.targets == 10 and res.bytes == 9 and res.patches == 0
    assert math.isclose(res.bpb, 10 * math.log2(VOCAB_SIZE) / 9, rel_tol=1e-6)
    assert math.isclose(res.loss, math.log(VOCAB_SIZE), rel_tol=1e-6)


def test_eval_task_reports_bpb_patch_length_of_a_checkpoint_on_a_file(tmp_path):
    recipe = write_recipe(tmp_path, model=TINY_BLT, training={"steps": 2}, checkpoint={"interval": 2})
    Trainer(load_recipe(recipe)).fit()
    text = tmp_path / "other.txt"
    text.write_bytes(b"To be, or not to be, that is the question. \xff\xfe binary too.\n" * 20)
    proc = run_cli(str(recipe), "--set", "job.task=eval", "--set", f"eval.path={text}", "--set", "eval.steps=0")
    assert proc.returncode == 0, proc.stderr
    assert "bpb" in proc.stdout and "mean patch length 4.00" in proc.stdout
    out = json.loads((tmp_path / "run" / "eval.json").read_text())
    n = len(text.read_bytes())
    assert n - 64 < out["bytes"] <= n and 5.0 < out["bpb"] < 9.0  # all whole windows of the file
    assert out["mean_patch_length"] == 4.0 and out["checkpoint"].endswith("step_00000002")
    assert out["flops_per_byte"] > 0 and "latent" in out["flops_per_byte_by_component"]


def test_eval_without_a_checkpoint_exits_2(tmp_path):
    proc = run_cli(str(write_recipe(tmp_path)), "--set", "job.task=eval")
    assert proc.returncode == 2 and "eval needs a checkpoint" in proc.stderr
