"""The training loop: data -> model -> loss -> AdamW step, with evaluation, metrics,
checkpoints and clean stops on SIGTERM/SIGINT.

    trainer = Trainer(recipe)      # builds data, model, optimizer; resumes if it can
    trainer.fit()                  # returns 0; on a signal saves a checkpoint and returns 0

One optimizer step = `training.grad_accum` micro-batches of `data.batch_size` windows per
rank. Losses are averaged over micro-batches and data-parallel ranks before logging.
Everything distributed goes through `World` and `parallelize`, so the single-process path
here is also the multi-process one.
"""

from __future__ import annotations

import json
import math
import signal
import threading
import time
from pathlib import Path

import torch

import bltx
from bltx.config import recipe_to_toml
from bltx.data.loader import build_data_for_recipe, validation_batches
from bltx.eval.bpb import autocast_context, batch_nll, evaluate_bpb
from bltx.precision import resolve_dtype
from bltx.sections import Recipe
from bltx.train.checkpoint import CheckpointManager
from bltx.train.metrics import MetricLogger
from bltx.train.optim import build_optimizer
from bltx.train.parallelize import build_training_model, clip_grad_norm, make_world
from bltx.train.schedule import build_scheduler
from bltx.train.world import World


def build_model_for_training(recipe: Recipe, world: World) -> torch.nn.Module:
    """Build the recipe's model on the training device with seeded initial weights.

    Models that define `init_weights()` get it called (torchtitan-style: the scale path
    builds on the meta device, shards, then `to_empty` + `init_weights`; this single-device
    path builds directly on the device, where it is cheap).
    """
    torch.manual_seed(recipe.job.seed)
    with torch.device(world.device):
        model = bltx.build_model(recipe)
    init = getattr(model, "init_weights", None)
    if callable(init):
        with torch.no_grad():
            init()
    return model


class Trainer:
    """Owns one training run: built from a recipe, run with `fit()`."""

    def __init__(self, recipe: Recipe, world: World | None = None):
        self.recipe = recipe
        self.world = world or make_world(recipe)
        self.device = self.world.device
        self.dump_dir = Path(recipe.job.dump_dir)
        self.total_steps = recipe.training.steps
        self.step = 0
        self._stop_signal: int | None = None

        self.data = build_data_for_recipe(recipe)
        # Each data-parallel rank reads its own shard of every global batch.
        self.train_batches = self.data.train_batches(
            recipe.data.batch_size, recipe.job.seed, self.world.dp_rank, self.world.dp_size
        )
        self.val_batches = (
            validation_batches(self.data.validation, recipe.data.batch_size, recipe.eval.steps,
                               self.world.dp_rank, self.world.dp_size)
            if self.data.validation is not None and recipe.eval.interval > 0 else []
        )

        self.model = build_training_model(recipe, self.world, build_model_for_training)
        self.optimizer = build_optimizer(self.model, recipe.optimizer, self.device)
        self.scheduler = build_scheduler(self.optimizer, recipe.lr_scheduler, self.total_steps)
        self.checkpoints = CheckpointManager(
            self.dump_dir, recipe.checkpoint.keep_latest, self.world.rank, self.world.barrier
        )
        self.recipe_toml = recipe_to_toml(recipe)
        self.logger = MetricLogger(
            self.dump_dir, self.total_steps, enabled=self.world.is_main,
            tensorboard=recipe.metrics.tensorboard, progress_bar=recipe.metrics.progress_bar,
        )
        dtype, why = resolve_dtype(recipe.training.dtype, self.device)
        self.logger.message(f"precision: {dtype} ({why})")
        if self.world.is_main:
            (self.dump_dir / "recipe.toml").write_text(self.recipe_toml + "\n", encoding="utf-8")
        self.resumed_from = self._maybe_resume()

    # ---- state ---------------------------------------------------------------------------

    def trainer_state(self) -> dict:
        """Everything besides model and optimizer that a resume needs, as one JSON string
        (DCP stores it as one opaque object; floats round-trip exactly through JSON)."""
        return {"json": json.dumps({
            "step": self.step,
            "scheduler": self.scheduler.state_dict(),
            "sampler": self.train_batches.state_dict(),
        })}

    def load_trainer_state(self, state: dict) -> None:
        s = json.loads(state["json"])
        self.step = int(s["step"])
        self.scheduler.load_state_dict(s["scheduler"])
        self.train_batches.load_state_dict(s["sampler"])

    def _maybe_resume(self) -> Path | None:
        """Newest checkpoint of this run's dump folder, else `checkpoint.load_path`."""
        cfg = self.recipe.checkpoint
        path = self.checkpoints.latest() if cfg.auto_resume and cfg.enable else None
        if path is None and cfg.load_path:
            from bltx.config import resolve_path

            path = resolve_path(self.recipe, cfg.load_path)
        if path is None:
            return None
        loaded = self.checkpoints.load(path, self.model, self.optimizer, self.trainer_state())
        self.load_trainer_state(loaded)
        self.logger.message(f"resumed from {path} at step {self.step}")
        return path

    def save_checkpoint(self) -> Path:
        path = self.checkpoints.save(self.step, self.model, self.optimizer, self.trainer_state(), self.recipe_toml)
        self.logger.message(f"saved checkpoint {path}")
        return path

    # ---- steps ---------------------------------------------------------------------------

    def train_step(self) -> dict[str, torch.Tensor]:
        """One optimizer step over `grad_accum` micro-batches; returns unsynced tensors."""
        cfg = self.recipe.training
        self.model.train()
        loss_sum = torch.zeros((), device=self.device)
        patches = torch.zeros((), device=self.device, dtype=torch.long)
        n_bytes = 0
        for _ in range(cfg.grad_accum):
            batch = next(self.train_batches)
            ids = batch["ids"].to(self.device, non_blocking=True)
            targets = batch["targets"].to(self.device, non_blocking=True)
            ent = batch.get("entropies")
            with autocast_context(self.device, cfg.dtype):
                nll, starts = batch_nll(self.model, ids, targets, None if ent is None else ent.to(self.device))
            loss = nll / targets.numel() / cfg.grad_accum
            loss.backward()
            loss_sum += loss.detach()
            n_bytes += ids.numel()
            if starts is not None:
                patches += starts.sum()
        grad_norm = clip_grad_norm(self.model, cfg.max_norm)
        lr = self.optimizer.param_groups[0]["lr"]  # the lr this step uses
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        self.scheduler.step()
        self.step += 1
        return {"loss": loss_sum, "grad_norm": grad_norm, "patches": patches, "bytes": n_bytes, "lr": lr}

    def evaluate(self) -> dict[str, float]:
        result = evaluate_bpb(self.model, self.val_batches, self.device, self.recipe.training.dtype,
                              reduce_sum=self._dp_sum)
        return result.scalars()

    def _dp_sum(self, value: torch.Tensor) -> torch.Tensor:
        """Sum over data-parallel shards: ranks that share a shard (tensor parallel) count once."""
        if not self.world.distributed:
            return value
        return self.world.sum(value) * (self.world.dp_size / self.world.world_size)

    # ---- loop ----------------------------------------------------------------------------

    def fit(self) -> int:
        rc = self.recipe
        log_every = max(1, rc.metrics.log_interval)
        eval_every = rc.eval.interval if self.val_batches else 0
        ckpt_every = rc.checkpoint.interval if rc.checkpoint.enable else 0
        if self.step >= self.total_steps:
            self.logger.message(f"already at step {self.step} of {self.total_steps}; nothing to train "
                                f"(raise training.steps or use a fresh job.dump_dir)")
            self.logger.close()
            return 0
        restore = self._install_signal_handlers()
        try:
            if eval_every and self.step == 0:  # the untrained model: where the curve starts
                self.logger.log(0, {"val_" + k: v for k, v in self.evaluate().items()}, split="val")
            window_loss, window_steps, window_bytes, window_patches = 0.0, 0, 0, 0
            t_window = time.perf_counter()
            while self.step < self.total_steps:
                out = self.train_step()
                window_steps += 1
                window_bytes += out["bytes"]
                # Syncs to the host only on log steps (no per-step .item()).
                window_loss = out["loss"] if window_steps == 1 else window_loss + out["loss"]
                window_patches = out["patches"] if window_steps == 1 else window_patches + out["patches"]
                stopping = self._should_stop()
                last = self.step == self.total_steps
                if self.step % log_every == 0 or last or stopping:
                    elapsed = time.perf_counter() - t_window
                    loss = self.world.mean(window_loss / window_steps).item()
                    total_bytes = window_bytes * self.world.dp_size
                    n_patches = int(self._dp_sum(window_patches).item())
                    scalars = {
                        "loss": loss,
                        "bpb": loss / math.log(2),
                        "bytes_per_s": total_bytes / elapsed,
                        "patches_per_s": n_patches / elapsed if n_patches else None,
                        "mean_patch_length": total_bytes / n_patches if n_patches else None,
                        "lr": out["lr"],
                        "grad_norm": float(out["grad_norm"]),
                    }
                    self.logger.log(self.step, scalars)
                    window_loss, window_steps, window_bytes, window_patches = 0.0, 0, 0, 0
                if eval_every and not stopping and (self.step % eval_every == 0 or last):
                    self.logger.log(self.step, {"val_" + k: v for k, v in self.evaluate().items()}, split="val")
                if stopping:
                    if rc.checkpoint.enable:
                        self.save_checkpoint()
                    name = signal.Signals(self._stop_signal).name if self._stop_signal else "stop"
                    self.logger.message(f"stopped by {name} at step {self.step}; resume by running the same command")
                    return 0
                if ckpt_every and (self.step % ckpt_every == 0 or last):
                    self.save_checkpoint()
                self.logger.progress(self.step)
                if window_steps == 0:  # a window starts after logging, eval and saving
                    t_window = time.perf_counter()
            return 0
        finally:
            restore()
            self.logger.close()

    # ---- signals -------------------------------------------------------------------------

    def request_stop(self, signum: int = signal.SIGTERM) -> None:
        """Ask the loop to save and stop after the current step (what the signals do)."""
        self._stop_signal = signum

    def _should_stop(self) -> bool:
        flag = torch.tensor(1.0 if self._stop_signal is not None else 0.0, device=self.device)
        # Every rank must agree, or one would wait forever in the checkpoint's collectives.
        return bool(self.world.sum(flag).item() > 0) if self.world.distributed else self._stop_signal is not None

    def _install_signal_handlers(self):
        if threading.current_thread() is not threading.main_thread():
            return lambda: None
        previous = {}

        def handler(signum, frame):
            if self._stop_signal is not None:  # second signal: stop now, without saving
                raise KeyboardInterrupt
            self._stop_signal = signum
            self.logger.message(f"got {signal.Signals(signum).name}: saving a checkpoint after this step")

        for sig in (signal.SIGTERM, signal.SIGINT):
            previous[sig] = signal.signal(sig, handler)

        def restore():
            for sig, old in previous.items():
                signal.signal(sig, old)

        return restore
