"""The `generate` task: a trained checkpoint streams text after the prompt."""

from bltx.config import load_recipe
from bltx.train.trainer import Trainer
from helpers import TINY_BLT, run_cli, write_recipe


def test_generate_task_streams_after_the_prompt(tmp_path):
    recipe = write_recipe(tmp_path, model=TINY_BLT, training={"steps": 2}, checkpoint={"interval": 2})
    Trainer(load_recipe(recipe)).fit()
    proc = run_cli(str(recipe), "--set", "job.task=generate", "--set", 'generate.prompt="ROMEO:"',
                   "--set", "generate.max_bytes=24", "--set", "generate.temperature=0.8")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("ROMEO:")
    assert "bytes/s" in proc.stderr.splitlines()[-1]
    # Same seed, same sampled text.
    again = run_cli(str(recipe), "--set", "job.task=generate", "--set", 'generate.prompt="ROMEO:"',
                    "--set", "generate.max_bytes=24", "--set", "generate.temperature=0.8")
    assert again.stdout == proc.stdout


def test_generate_task_errors_are_one_line(tmp_path):
    recipe = write_recipe(tmp_path, model=TINY_BLT)
    proc = run_cli(str(recipe), "--set", "job.task=generate", "--set", "generate.prompt=hi")
    assert proc.returncode == 2 and "generate needs a checkpoint" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1
    proc = run_cli(str(recipe), "--set", "job.task=generate", "--set", "generate.top_p=0.0")
    assert proc.returncode == 2 and "top_p" in proc.stderr
