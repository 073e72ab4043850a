"""Training: the loop, AdamW and lr schedules, metrics, checkpoints and the `train` task.

Import `bltx.train.trainer.Trainer` to drive a run from code; `python -m bltx.run RECIPE`
runs it through the registered `train` task.
"""
