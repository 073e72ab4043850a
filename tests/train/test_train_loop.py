"""The training loop: loss falls on real text, outputs land in the dump folder, bf16 and
gradient accumulation run, and a BLT trains end to end."""

import math

from bltx.config import load_recipe
from bltx.train.trainer import Trainer
from helpers import TINY_BLT, read_metrics, write_recipe


def test_validation_bpb_falls_on_shakespeare_within_60_steps(tmp_path):
    path = write_recipe(
        tmp_path,
        training={"steps": 60},
        data={"batch_size": 8},
        eval={"interval": 60, "steps": 2},
        checkpoint={"enable": False},
        metrics={"log_interval": 20, "tensorboard": False, "progress_bar": False},
    )
    Trainer(load_recipe(path)).fit()
    val = read_metrics(tmp_path / "run", "val")
    start, end = val[0]["val_bpb"], val[-1]["val_bpb"]
    assert val[0]["step"] == 0 and val[-1]["step"] == 60
    assert start > 7.5  # ~log2(260): an untrained model is uniform over ids
    assert end < 5.0, f"val bpb {start:.2f} -> {end:.2f}"


def test_dump_folder_gets_recipe_metrics_tensorboard_and_checkpoints(tmp_path):
    path = write_recipe(tmp_path, training={"steps": 3}, metrics={"tensorboard": True, "log_interval": 1},
                        eval={"interval": 3, "steps": 1})
    Trainer(load_recipe(path)).fit()
    run = tmp_path / "run"
    assert "[model.entropy_model]" in (run / "recipe.toml").read_text()
    assert load_recipe(run / "recipe.toml").training.steps == 3  # the dump is a valid recipe
    assert any((run / "tb").glob("events.out.tfevents.*"))
    assert (run / "checkpoints" / "step_00000003" / "COMPLETE").is_file()
    rows = read_metrics(run)
    assert len(rows) == 3 and all(math.isclose(r["bpb"], r["loss"] / math.log(2)) for r in rows)
    assert "val_bpb" in read_metrics(run, "val")[-1]


def test_bf16_autocast_grad_accum_and_wsd_schedule_run(tmp_path):
    path = write_recipe(
        tmp_path,
        training={"steps": 4, "dtype": "bfloat16", "grad_accum": 2, "max_norm": 0.5},
        lr_scheduler={"type": "wsd", "warmup_steps": 1, "decay_fraction": 0.5, "min_lr_ratio": 0.0},
        checkpoint={"enable": False},
    )
    trainer = Trainer(load_recipe(path))
    trainer.fit()
    rows = read_metrics(tmp_path / "run")
    assert [round(r["lr"], 8) for r in rows] == [3e-3, 3e-3, 1.5e-3, 0.0]
    assert all(math.isfinite(r["loss"]) for r in rows)
    assert rows[0]["bytes_per_s"] > 0
    assert trainer.train_batches.sampler.cursor == 4 * 2 * 4  # steps * accum * batch windows


def test_tiny_blt_trains_with_patch_statistics(tmp_path):
    path = write_recipe(tmp_path, model=TINY_BLT, training={"steps": 3}, checkpoint={"enable": False},
                        eval={"interval": 3, "steps": 1})
    Trainer(load_recipe(path)).fit()
    rows = read_metrics(tmp_path / "run")
    assert all(r["mean_patch_length"] == 4.0 for r in rows)
    val = read_metrics(tmp_path / "run", "val")[-1]
    assert val["val_mean_patch_length"] == 4.0 and math.isfinite(val["val_bpb"])
