"""The training loop: data -> model -> loss -> AdamW step, with evaluation, metrics,
checkpoints and clean stops on SIGTERM/SIGINT.

    trainer = Trainer(recipe)      # builds data, model, optimizer; resumes if it can
    trainer.fit()                  # 0 when done or stopped by SIGTERM (after saving), 130
                                   # after a SIGINT's save; EXIT_NONFINITE when a step diverged

One optimizer step = `training.grad_accum` micro-batches of `data.batch_size` windows per
data-parallel rank; the global batch is `batch_size x dp` windows whatever the layout, and
every layout reads the same windows in the same order (bltx/data/sampler.py). One build
path (`build_training_model`) and one `World` serve every launch, a single process
included (a 1-rank world), so the code that trains on one CPU is the code that trains on
a mesh.

Host syncs: one per step (the global gradient norm, read before the update so a NaN/inf
step is never applied; it is the same value on every rank, so no extra collective), then,
on more than one rank, a one-scalar all-reduce of the stop flag (`_stop_agreed`), and one
all-reduce per log step that carries the window's loss, bytes and patches.
"""

from __future__ import annotations

import json
import math
import signal
import threading
import time
from pathlib import Path

import torch

from bltx.bytes import byte_targets, scored_targets
from bltx.checkpoint import CheckpointManager, check_resume, find_checkpoint, local_state_finite, parse_trainer_state
from bltx.config import recipe_to_toml
from bltx.data.loader import build_data_for_recipe
from bltx.train.loss import BpbResult, autocast_context, evaluate_bpb
from bltx.errors import BltxError
from bltx.parallel import World, build_training_model, clip_grad_norm_
from bltx.precision import resolve_dtype
from bltx.sections import Recipe
from bltx.train.data_checks import check_model_for_data
from bltx.train.finetune import build_for_training, finish_training_model
from bltx.train.init_weights import load_init
from bltx.train.metrics import MetricLogger
from bltx.train.optim import build_optimizer
from bltx.train.schedule import build_scheduler

# Exit code of a run stopped by a non-finite loss or gradient (training.on_nonfinite = "stop").
EXIT_NONFINITE = 3
# Exit code after a SIGINT's save: the shell's 128 + SIGINT, so a scheduler or script tells an
# interrupted run from a finished one. SIGTERM (preemption) stays 0 once its save is done.
EXIT_INTERRUPTED = 130


class NonFiniteStep(BltxError):
    """A step produced a NaN/inf loss or gradient norm; its update was not applied."""


class Trainer:
    """Owns one training run: built from a recipe, run with `fit()`."""

    def __init__(self, recipe: Recipe, world: World | None = None):
        self.recipe = recipe
        self.world = world or World.from_env(recipe.job.device, recipe.parallelism)
        self.device = self.world.device
        self.dump_dir = Path(recipe.job.dump_dir)
        self.total_steps = recipe.training.steps
        self.step = 0
        self.skipped_steps = 0
        self._stop_signal: int | None = None
        self.dtype, dtype_reason = resolve_dtype(recipe.training.dtype, self.device)

        self.data = build_data_for_recipe(recipe)
        # Each data-parallel rank reads its own shard of every global batch.
        self.train_batches = self.data.train_batches(
            recipe.data.batch_size, recipe.job.seed, self.world.dp_rank, self.world.dp_size
        )
        # Validation batches per source (one source: the recipe's validation split).
        self.val_sets = (
            self.data.validation_sets(recipe.data.batch_size, recipe.eval.steps,
                                      self.world.dp_rank, self.world.dp_size)
            if recipe.eval.interval > 0 else {}
        )
        self.val_batches = [b for batches in self.val_sets.values() for b in batches]

        # Adapters and frozen parameters are set on the meta build, before any parallelism.
        self.model = build_training_model(recipe, self.world, build=build_for_training)
        finish_training_model(self.model, recipe)
        check_model_for_data(self.model, recipe.data)
        self.optimizer = build_optimizer(self.model, recipe.optimizer, self.device)
        self.scheduler = build_scheduler(self.optimizer, recipe.lr_scheduler, self.total_steps)
        self.recipe_toml = recipe_to_toml(recipe)
        self.logger = MetricLogger(
            self.dump_dir, self.total_steps, enabled=self.world.is_main,
            tensorboard=recipe.metrics.tensorboard, progress_bar=recipe.metrics.progress_bar,
        )
        self.checkpoints = CheckpointManager(
            self.dump_dir, recipe.checkpoint.keep_latest, self.world.rank, self.world.barrier,
            log=self.logger.message,
        )
        self.logger.message(f"precision: {self.dtype} ({dtype_reason})")
        if recipe.data.entropies_path:  # checked against the data when the data was built
            self.logger.message(f"patching from stored entropies {recipe.data.entropies_path} "
                                f"(the patcher's entropy model does not run in training)")
        if self.world.distributed:
            self.logger.message(f"layout: {self.world.degrees.describe()} on {self.world.world_size} ranks")
        if self.world.is_main:
            (self.dump_dir / "recipe.toml").write_text(self.recipe_toml + "\n", encoding="utf-8")
        self.resumed_from = self._maybe_resume()
        if self.resumed_from is None and recipe.init.path:  # a fresh start from given weights
            load_init(self.model, recipe, log=self.logger.message)

    # ---- state ---------------------------------------------------------------------------

    def trainer_state(self) -> dict:
        """Everything besides model and optimizer that a resume needs, as one JSON string
        (DCP stores it as one opaque object; floats round-trip exactly through JSON)."""
        return {"json": json.dumps({
            "step": self.step,
            # Only the position: the factors come from this recipe's schedule and the base lr
            # from this recipe's optimizer.lr, one per param group of this layout.
            "scheduler": {"last_epoch": self.scheduler.last_epoch},
            "sampler": self.train_batches.state_dict(),
        })}

    def load_trainer_state(self, state: dict, where: object = "") -> None:
        s = parse_trainer_state(state, where)
        self.step = int(s["step"])
        self.set_schedule_position(int(s["scheduler"]["last_epoch"]))
        self.train_batches.load_state_dict(s["sampler"])

    def set_schedule_position(self, last_epoch: int) -> None:
        """Put the LR schedule at `last_epoch` and set every group's lr from it. Layout-free
        (param groups differ between layouts) and it applies the recipe's optimizer.lr, so
        a resume with a changed lr uses the new one rather than the checkpoint's."""
        self.scheduler.last_epoch = last_epoch
        lrs = [base * fn(last_epoch) for base, fn in zip(self.scheduler.base_lrs, self.scheduler.lr_lambdas)]
        for group, lr in zip(self.optimizer.param_groups, lrs):
            group["lr"] = lr
        self.scheduler._last_lr = lrs

    def _maybe_resume(self) -> Path | None:
        """Newest checkpoint of this run's dump folder, else `checkpoint.load_path`."""
        cfg = self.recipe.checkpoint
        # The recipe's optimizer settings win over the checkpoint's (which the per-parameter
        # optimizer state carries): keep them aside and put them back after loading.
        hyper = [{k: v for k, v in g.items() if k != "params"} for g in self.optimizer.param_groups]
        found = None
        if cfg.auto_resume and cfg.enable:
            # The newest checkpoint that verifies, is finite, loads and has a well-formed
            # trainer state; each newer one that fails is one warning.
            found = self.checkpoints.load_newest(self.model, self.optimizer, self.trainer_state(),
                                                 accept=parse_trainer_state)
        if found is None and cfg.load_path:
            from bltx.config import resolve_path

            named = resolve_path(self.recipe, cfg.load_path, "checkpoint.load_path")
            loaded = self.checkpoints.load(named, self.model, self.optimizer, self.trainer_state())
            parse_trainer_state(loaded, named)
            found = named, loaded
        if found is None:
            return None
        path, loaded = found
        # After the load, so a checkpoint of another shape gets the load's "another model"
        # error; a shape-preserving model change is caught here, before any step runs.
        changes = check_resume(find_checkpoint(path), self.recipe_toml, cfg.allow_model_changes)
        for group, values in zip(self.optimizer.param_groups, hyper):
            group.update(values)
        self.load_trainer_state(loaded, path)
        self.logger.message(f"resumed from {path} at step {self.step}")
        for change in changes:
            self.logger.message(f"  changed since that checkpoint, applied: {change}")
        return path

    def save_checkpoint(self) -> Path:
        # "finite" is what the tensors hold, agreed by every rank (each checks its shards):
        # pruning keeps the newest finite checkpoint and eval/generate refuse the others.
        bad = torch.tensor([0.0 if local_state_finite(self.model, self.optimizer) else 1.0], device=self.device)
        finite = float(self.world.all_sum(bad).item()) == 0.0
        path = self.checkpoints.save(self.step, self.model, self.optimizer, self.trainer_state(),
                                     self.recipe_toml, finite=finite)
        if not finite:
            self.logger.message(f"checkpoint {path.name} holds non-finite weights or optimizer state; "
                                f"it is marked so and the newest finite checkpoint is kept")
        self.logger.message(f"saved checkpoint {path}")
        return path

    # ---- steps ---------------------------------------------------------------------------

    def train_step(self) -> dict:
        """One optimizer step over `grad_accum` micro-batches. Returns this rank's unsynced
        sums (nll, real bytes, patches) and the global grad norm; the update is applied only
        when the norm is finite (`applied`)."""
        cfg = self.recipe.training
        self.model.train()
        nll_sum = torch.zeros((), device=self.device, dtype=torch.float64)
        real_bytes = torch.zeros((), device=self.device, dtype=torch.float64)
        patches = torch.zeros((), device=self.device, dtype=torch.float64)
        n_targets = torch.zeros((), device=self.device, dtype=torch.float64)  # scored (bltx/bytes.py)
        positions = 0  # bytes read, trained on or not: throughput and patch length
        # Model extras (the forward's ModelOutput `aux_losses` and `stats`, dicts of scalar
        # tensors; learned chunking returns them): aux losses join the loss, and both are
        # summed here and logged as window means under their own names.
        extras: dict[str, torch.Tensor] = {}
        for _ in range(cfg.grad_accum):
            batch = next(self.train_batches)
            ids = batch["ids"].to(self.device, non_blocking=True)
            targets = batch["targets"].to(self.device, non_blocking=True)
            ent, docs = batch.get("entropies"), batch.get("doc_ids")
            with autocast_context(self.device, self.dtype):
                docs = {} if docs is None else {"doc_ids": docs.to(self.device, non_blocking=True)}
                out = self.model(ids, targets, entropies=None if ent is None else ent.to(self.device), **docs)
            nll, starts, aux, stats = out.nll, out.starts, out.aux_losses or {}, out.stats or {}
            scored = scored_targets(targets).sum()
            loss = nll / scored.clamp_min(1) + sum(aux.values())
            (loss / cfg.grad_accum).backward()
            for name, value in {**aux, **stats}.items():
                extras[name] = extras.get(name, 0.0) + value.detach().double() / cfg.grad_accum
            nll_sum += nll.detach().double()
            real_bytes += byte_targets(targets).sum()
            n_targets += scored
            positions += targets.numel()
            if starts is not None:
                patches += starts.sum()
        grad_norm = clip_grad_norm_(self.model.parameters(), cfg.max_norm if cfg.max_norm > 0 else float("inf"))
        lr = self.optimizer.param_groups[0]["lr"]  # the lr this step uses
        # The one host sync of a step: never apply an update computed from NaN/inf. The norm
        # is all-reduced, so every rank takes the same decision without another collective.
        applied = bool(torch.isfinite(grad_norm))
        stop = self._stop_agreed()  # right after that sync, while the device is idle anyway
        if applied:
            self.optimizer.step()
        else:
            self.skipped_steps += 1
        self.optimizer.zero_grad(set_to_none=True)
        self.scheduler.step()
        self.step += 1
        return {"nll": nll_sum, "real_bytes": real_bytes, "patches": patches, "targets": n_targets,
                "positions": positions, "grad_norm": grad_norm, "lr": lr, "applied": applied,
                "extras": extras, "steps": 1, "stop": stop}

    def evaluate(self) -> dict[str, float]:
        """Validation scalars over all sources; with several, also `bpb/NAME` per source."""
        results = {name: evaluate_bpb(self.model, batches, self.device, self.dtype, reduce_sum=self.world.dp_sum)
                   for name, batches in self.val_sets.items()}
        total = sum(results.values(), BpbResult(0.0, 0, 0, 0))
        scalars = total.scalars()
        if len(results) > 1:
            scalars.update({f"bpb/{name}": r.bpb for name, r in results.items()})
        return scalars

    def _window_scalars(self, window: dict, elapsed: float) -> dict:
        """Global metrics of a log window, from one all-reduce.

        Per-shard sums are identical on the TP ranks of a shard, so the world-wide sum
        counts each shard `tp_size` times."""
        names = sorted(window["extras"])  # model extras ride in the same all-reduce
        positions = torch.as_tensor(float(window["positions"]), dtype=torch.float64, device=self.device)
        local = torch.stack([window["nll"], window["targets"], window["real_bytes"], window["patches"], positions,
                             *[torch.as_tensor(window["extras"][n], device=self.device) for n in names]]).double()
        nll, n_targets, n_real, n_patches, n_positions, *extra_sums = self.world.all_sum(local / self.world.tp_size).tolist()
        # Means over the window's steps and the data-parallel ranks.
        extra_means = {n: v / (window["steps"] * self.world.dp_size) for n, v in zip(names, extra_sums)}
        scalars = {
            "loss": nll / max(1.0, n_targets),
            "bpb": nll / math.log(2) / max(1.0, n_real),
            "bytes_per_s": n_positions / elapsed,
            "patches_per_s": n_patches / elapsed if n_patches else None,
            "mean_patch_length": n_positions / n_patches if n_patches else None,
            "lr": window["lr"],
            "grad_norm": float(window["grad_norm"]),
            **extra_means,
        }
        if self.skipped_steps:
            scalars["skipped_steps"] = float(self.skipped_steps)
        if self.device.type == "cuda":  # this rank's high-water mark, for sizing runs
            scalars["peak_mem_gib"] = torch.cuda.max_memory_allocated(self.device) / 2**30
        return scalars

    def _stop_agreed(self) -> bool:
        """Does any rank have a stop signal? Every rank asks at every step.

        A signal reaches each rank at its own moment (torchrun forwards SIGTERM to every
        worker; they may be a step apart), so no rank can know another is waiting: a
        collective held only "while a signal is pending" would pair with nothing on the
        others. One scalar all-reduce per step is the price of stopping at the very next
        step, inside torchrun's 30 s grace period, whatever metrics.log_interval is. It
        follows the step's one host sync, when the device has no queued work, so it costs
        the collective's latency: 0.6 ms per step with gloo on 2 busy CPU cores (README),
        against 100+ ms for a tiny CPU step."""
        pending = self._stop_signal is not None
        if not self.world.distributed:
            return pending
        flag = torch.tensor([1.0 if pending else 0.0], device=self.device)
        return float(self.world.all_sum(flag).item()) > 0

    # ---- loop ----------------------------------------------------------------------------

    def fit(self) -> int:
        rc = self.recipe
        log_every = max(1, rc.metrics.log_interval)
        eval_every = rc.eval.interval if self.val_batches else 0
        # checkpoint.interval = 0: save only at the end (and on a stop signal).
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
            window: dict | None = None
            t_window = time.perf_counter()
            while self.step < self.total_steps:
                out = self.train_step()
                if window is None:
                    window = dict(out)
                else:
                    for key in ("nll", "real_bytes", "patches", "positions"):
                        window[key] = window[key] + out[key]
                    window["steps"] += 1
                    window["extras"] = {k: window["extras"].get(k, 0.0) + v for k, v in out["extras"].items()}
                    window["targets"] = window["targets"] + out["targets"]  # a tensor: no host sync
                    window.update(grad_norm=out["grad_norm"], lr=out["lr"])
                diverged = not out["applied"] and rc.training.on_nonfinite == "stop"
                last = self.step == self.total_steps
                stopping = out["stop"]  # agreed by every rank at this step
                if self.step % log_every == 0 or last or diverged or stopping:
                    scalars = self._window_scalars(window, time.perf_counter() - t_window)
                    self.logger.log(self.step, scalars)
                    window = None
                if not out["applied"]:
                    self.logger.message(
                        f"step {self.step}: non-finite loss or gradient norm "
                        f"(grad_norm {float(out['grad_norm'])}); the update was not applied"
                    )
                if diverged:
                    return self._stop_diverged()
                if eval_every and not stopping and (self.step % eval_every == 0 or last):
                    self.logger.log(self.step, {"val_" + k: v for k, v in self.evaluate().items()}, split="val")
                if stopping:
                    if rc.checkpoint.enable:
                        self.save_checkpoint()
                    signum = self._stop_signal  # None on a rank that stops for another's signal
                    name = signal.Signals(signum).name if signum else "a signal on another rank"
                    self.logger.message(f"stopped by {name} at step {self.step}; resume by running the same command")
                    return EXIT_INTERRUPTED if signum == signal.SIGINT else 0
                if rc.checkpoint.enable and (last or (ckpt_every and self.step % ckpt_every == 0)):
                    self.save_checkpoint()
                self.logger.progress(self.step)
                if window is None:  # a window starts after logging, eval and saving
                    t_window = time.perf_counter()
            return 0
        finally:
            restore()
            self.logger.close()

    def _stop_diverged(self) -> int:
        """training.on_nonfinite = "stop": nothing is saved (the weights are those of the
        last applied step, but the run has left its stable region); say where to resume."""
        newest = self.checkpoints.latest()
        where = f"the newest checkpoint is {newest}" if newest else "no checkpoint was saved"
        self.logger.error(
            f"step {self.step}: loss or gradient norm is not finite; stopped without applying "
            f"the update ({where}); lower optimizer.lr, raise warmup or set "
            f"training.on_nonfinite = \"skip\""
        )
        return EXIT_NONFINITE

    # ---- signals -------------------------------------------------------------------------

    def request_stop(self, signum: int = signal.SIGTERM) -> None:
        """Ask the loop to save and stop after the current step (what the signals do)."""
        self._stop_signal = signum

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
