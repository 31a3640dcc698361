"""The Trainer: set up once (data, model, run directory, resume), then run the job's phases.

A phase has its own epochs, optimizer, LR schedule, trainable parameters and BatchNorm
mode (``hpcnn.config.phases``); a job without ``phases`` is one phase, as before. Entering
a phase sets ``requires_grad``, re-wraps the model for DDP (which registers only trainable
parameters) and builds a fresh optimizer. Checkpoints record the ``Position`` (phase,
epoch in phase, step, epochs done), so a resumed run lands in the right phase at the right
step and continues bitwise as if never stopped (CPU). Everything else that watches
training (progress, metrics file, TensorBoard, GPU telemetry, tests) is a ``Callback``. What is
optimised and how it is judged (loss, validation metrics, final weights, test) is the ``Objective``
it is given (``train/objective.py``): supervised classification by default, SimCLR from ``hpcnn.ssl``.

The Trainer knows nothing about launchers or Slurm: it gets a World-derived Comm, and a
``stop`` callable that says "checkpoint and return now" (set by a preemption signal).
"""
from __future__ import annotations

import dataclasses
import logging
import math
import shlex
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from ..config import to_dict
from ..config.phases import Phase, resolve_phases
from ..data.gpu_decode import resolve_decode, train_loader
from ..data.loaders import RankBatchSampler, ShardBatchSampler, make_loader
from ..errors import CheckpointError, ConfigError
from ..models.loading import brief_report
from ..models.parts import head_name
from .. import rundir
from ..results import is_final, read_summary, write_summary
from . import checkpoint as ckpt
from .checkpoint import rng_state, set_rng_state
from . import plots
from .callbacks import builtin_callbacks
from .early_stop import EarlyStopper
from .events import Events, LogPoint, Position
from .features import feature_set, use_cache
from .freeze import frozen_batchnorm, select
from .inputs import input_data, job_inputs, preprocessing
from .loop import train_epoch
from .objective import Objective, Supervised
from .schedule import scaled_lr
from .setup import batch_sizes, new_model, phase_step, step_context
from .summary import build_summary

log = logging.getLogger("hpcnn.train")
CHECKPOINT_FORMAT = 2
INTERRUPTED = ("preempted", "paused")  # statuses of a run that stopped with a checkpoint, to continue


@dataclass
class FitResult:
    status: str  # completed | early_stopped | preempted | paused
    summary: dict


def no_checkpoint_error(run_dir: Path) -> CheckpointError:
    """--resume before the first checkpoint: nothing is lost by starting over, and this is how."""
    config, folder = shlex.quote(str(rundir.config_path(run_dir))), shlex.quote(str(run_dir))
    return CheckpointError("no checkpoint to resume from yet", str(rundir.checkpoints_dir(run_dir)),
                           f"the run stopped before its first checkpoint, so it can simply be started again: "
                           f"hpcnn train {config} --run-dir {folder}")


class Trainer:
    def __init__(self, cfg, comm, run_dir: Path, device: torch.device, stop=lambda: False, callbacks=(),
                 resume: str | None = None, job=None, objective: Objective | None = None):
        """``resume``: None (fresh), "auto" (newest checkpoint if any) or "required".

        ``objective``: what the run optimises (``train/objective.py``); supervised classification by default,
        ``hpcnn.objectives.objective_for(cfg)`` picks the config's.
        """
        self.cfg, self.comm, self.device, self.stop, self.job = cfg, comm, device, stop, job
        self.objective = objective if objective is not None else Supervised(cfg)
        self.objective.check()
        self.run_dir = Path(run_dir)
        self.ckpt_dir = rundir.checkpoints_dir(self.run_dir)
        self.is_main = comm.is_main
        self.phases: list[Phase] = resolve_phases(cfg)
        self.total_epochs = sum(p.epochs for p in self.phases)
        self.global_batch, _ = batch_sizes(cfg, comm.world_size)
        resuming = bool(resume) and bool(ckpt.list_checkpoints(self.ckpt_dir))
        self._setup_data()
        self.raw_model, report = new_model(cfg, self.objective, device, len(self.classes), self.classes,
                                           load_weights=not resuming)  # resuming: weights come from the checkpoint
        self.weights_report = brief_report(report)
        self.ctx = step_context(cfg, comm, device, self.objective, self.normalize, self.steps_per_epoch,
                                self.global_batch, self.pin)
        self.events = Events(self, [*builtin_callbacks(cfg), *callbacks])
        self.position = Position()
        self.history = []
        self.stopper = EarlyStopper(self.objective.early_stopping(self))
        self.best_state: dict | None = None
        self.phase_epochs_run = [0] * len(self.phases)
        self.ended_early = [False] * len(self.phases)
        self.pausing = False  # pause_run(): checkpoint after this epoch and return 'paused'
        self.selections: dict[int, object] = {}
        self.elapsed_before = 0.0
        self.model = self.train_model = self.optimizer = None
        self._pending_optimizer: dict | None = None
        self._last_save = time.monotonic()
        torch.manual_seed(cfg.seed + 1 + comm.rank)  # dropout streams differ per rank
        self.resumed_from = self._resume(resume)

    # ------------------------------------------------------------------ set-up
    def _setup_data(self) -> None:
        cfg, comm, device = self.cfg, self.comm, self.device
        resolve_decode(cfg.data, device)  # data.decode: gpu without a GPU fails before any data loads
        self.splits, normalize = job_inputs(cfg, announce=comm.is_main)
        self.classes = self.splits.classes
        self.preprocess = preprocessing(input_data(cfg), normalize)
        self.normalize = normalize.to(device)
        self.pin = cfg.data.pin_memory and device.type == "cuda"
        self.sampler = RankBatchSampler(len(self.splits.train), self.global_batch, comm.rank, comm.world_size,
                                        cfg.seed, cfg.train.max_steps_per_epoch)
        self.train_loader, self.decode = train_loader(self.splits.train, self.sampler, cfg.data, device, self.pin)
        self.steps_per_epoch = self.sampler.steps_per_epoch
        self.eval_batch = max(self.global_batch // comm.world_size, 64)

    def eval_loader(self, dataset):
        sampler = ShardBatchSampler(len(dataset), self.eval_batch, self.comm.rank, self.comm.world_size)
        return make_loader(dataset, sampler, self.cfg.data.num_workers, self.pin)

    def peak_lr(self, phase: Phase) -> float:
        return scaled_lr(phase.optim.lr, self.global_batch, phase.schedule)

    @property
    def global_step(self) -> int:
        return self.position.epoch * self.steps_per_epoch + self.position.step

    # ------------------------------------------------------------------ resume (the one place)
    def _resume(self, mode: str | None) -> Path | None:
        if not mode:
            return None
        found = ckpt.load_latest(self.ckpt_dir)
        if found is None:
            if mode != "auto":
                raise no_checkpoint_error(self.run_dir)
            return None
        state, path = found
        self._check_resumable(state, path)
        self.raw_model.load_state_dict(state["model"])
        if self.ctx.scaler and state.get("scaler"):
            self.ctx.scaler.load_state_dict(state["scaler"])
        if len(state["rng"]) == self.comm.world_size:
            set_rng_state(state["rng"][self.comm.rank], self.device)
        self.position = _position(state)
        self.history = list(state["history"])
        self.stopper.load_state_dict(state["early_stop"])
        self.phase_epochs_run = list(state.get("phase_epochs_run", [len(self.history)]))
        self.phase_epochs_run += [0] * (len(self.phases) - len(self.phase_epochs_run))
        self.ended_early = list(state.get("phase_ended_early", [self.stopper.should_stop]))
        self.elapsed_before = state.get("wall_seconds", 0.0)
        self._pending_optimizer = state["optimizer"] or None
        if (self.ckpt_dir / rundir.BEST).is_file():
            self.best_state = ckpt.load_file(self.ckpt_dir / rundir.BEST)["model"]
        if self.is_main:
            p = self.position
            log.info("resuming from %s: phase %d/%d, epoch %d, step %d", path, min(p.phase + 1, len(self.phases)),
                     len(self.phases), p.epoch + 1, p.step)
        return path

    def _check_resumable(self, state: dict, path: Path) -> None:
        """A checkpoint only continues the same experiment: same objective, model, global batch and phases."""
        where = f"resume from {self.run_dir}"
        if state.get("kind", Supervised.kind) != self.objective.kind:
            raise CheckpointError(f"{path.name} was written by a {state.get('kind', Supervised.kind)} run, this is "
                                  f"a {self.objective.kind} run", where,
                                  f"resume with the run's own {rundir.CONFIG_FILE} (hpcnn train --resume RUN_DIR)")
        old = state.get("config", {})
        if old.get("model") and old["model"] != to_dict(self.cfg)["model"]:
            raise ConfigError("the model config differs from the one the checkpoint was written with", where,
                              f"resume with the run's own {rundir.CONFIG_FILE} (hpcnn train --resume RUN_DIR)")
        if state.get("global_batch", self.global_batch) != self.global_batch:
            raise ConfigError(f"the checkpoint was written with global batch {state['global_batch']}, this run has "
                              f"{self.global_batch}: the sample order would not continue", where,
                              "keep train.batch_size (and batch_scope) as they were; the number of ranks may change")
        if "phases" in old and len(old["phases"] or []) != len(self.cfg.phases):
            raise ConfigError("the checkpoint was written with a different list of phases", where,
                              "resume with the run's own config (phases may get more epochs, not be added)")

    def _state(self) -> dict:
        """Everything to continue exactly; collective (gathers every rank's RNG state)."""
        return {"format": CHECKPOINT_FORMAT, "kind": self.objective.kind, **dataclasses.asdict(self.position),
                "step_in_epoch": self.position.step, "model": self.raw_model.state_dict(),
                "optimizer": self.optimizer.state_dict() if self.optimizer is not None else {},
                "scaler": self.ctx.scaler.state_dict() if self.ctx.scaler else {},
                "rng": self.comm.all_gather_object(rng_state(self.device)), "history": self.history,
                "early_stop": self.stopper.state_dict(), "phase_epochs_run": self.phase_epochs_run,
                "phase_ended_early": self.ended_early,
                "wall_seconds": self.elapsed_before + time.time() - self.t_start, "config": to_dict(self.cfg),
                "classes": self.classes, "world_size": self.comm.world_size, "global_batch": self.global_batch}

    def save(self) -> None:
        """Write a checkpoint at the current position (every rank calls it)."""
        self.events.emit("on_stage", "checkpoint", self.global_step)
        state = self._state()
        path = None
        if self.is_main:
            path = ckpt.save_checkpoint(state, self.ckpt_dir, self.cfg.train.checkpoint.keep_last)
            log.info("checkpoint %s", path.name)
        self._last_save = time.monotonic()
        self.events.emit("on_checkpoint", path, self.position)

    # ------------------------------------------------------------------ running
    def fit(self) -> FitResult:
        self.t_start = time.time()
        finished = self._finished_summary()
        if finished is not None:  # resumed a finished run: nothing to train, nothing to re-test
            return FitResult(finished["status"], finished)
        if self.is_main:
            log.info("%s, global batch %d on %d rank(s), %d phase(s), %d epochs, %s", self.objective.describe(self),
                     self.global_batch, self.comm.world_size, len(self.phases), self.total_epochs, self.device)
        self.events.emit("on_run_start")
        status = "completed"
        while self.position.phase < len(self.phases) and status not in INTERRUPTED:
            phase = self.phases[self.position.phase]
            if self._phase_over(phase):  # all its epochs run (or stopped early): on to the next
                status = "early_stopped" if self.ended_early[phase.index] else "completed"
                self.position = Position(phase.index + 1, 0, 0, self.position.epoch)
                self._pending_optimizer = None  # the next phase starts with a fresh optimizer
                continue
            status = self._run_phase(phase)
        tested = self._finish() if status not in INTERRUPTED else None
        summary = build_summary(self, status, self.elapsed_before + time.time() - self.t_start)
        summary = self.objective.add_results(summary, tested)
        self.events.emit("on_run_end", summary)
        if self.is_main:
            write_summary(self.run_dir, summary)
            if self.cfg.train.plots and self.objective.plots and status not in INTERRUPTED:
                self._plots(summary)
        return FitResult(status, summary)

    def _finished_summary(self) -> dict | None:
        """A resumed run whose phases have all run their epochs and whose summary is final: say so, keep it.

        More epochs (``train.epochs=N``, or a phase's ``epochs``) make the last phase not over: it trains on.
        """
        last = len(self.phases) - 1
        pos = self.position.phase
        done = pos > last or (pos == last and self._phase_over(self.phases[last]))
        summary = read_summary(self.run_dir) if self.resumed_from is not None and done else None
        if not is_final(summary):
            return None
        if self.is_main:
            metrics = summary.get("metrics") or {}
            scores = [f"{split}.{name} {metrics[split][name]:.4f}" for split, name in
                      (("val", self.stopper.metric.split(".")[-1]), ("test", "accuracy"))
                      if isinstance((metrics.get(split) or {}).get(name), (int, float))]
            log.info("run %s is already complete (%s after %d epochs%s; see %s): nothing to do — to train longer, "
                     "resume with more epochs: hpcnn train --resume %s train.epochs=%d", self.run_dir,
                     summary["status"], len(self.history), "; " + ", ".join(scores) if scores else "",
                     self.run_dir / rundir.SUMMARY_FILE, shlex.quote(str(self.run_dir)), self.total_epochs + 1)
        return summary

    def _enter_phase(self, phase: Phase) -> None:
        """requires_grad, a fresh DDP wrap and optimizer, the phase's schedule in the step context."""
        sel = self.selections[phase.index] = select(self.raw_model, phase)
        self.model = self.train_model = None  # drop the previous phase's DDP wrapper (and its gradient hooks)
        frozen_bn = frozen_batchnorm(self.raw_model, phase)
        caching = self.objective.caches_features and use_cache(self.cfg, phase, self.raw_model, frozen_bn)
        features = self._features(phase) if caching else None
        cached = features is not None
        self.phase_loader = make_loader(features, self.sampler, 0, self.pin) if cached else self.train_loader
        head = getattr(self.raw_model, head_name(self.raw_model)) if cached else None
        first_epoch = self.position.epoch - self.position.phase_epoch
        step = phase_step(self.cfg, self.comm, self.device, self.objective, self.raw_model, phase, self.ctx, frozen_bn,
                          head, first_epoch)
        self.raw_model, self.train_model, self.optimizer, self.ctx = step.raw_model, step.train_model, \
            step.optimizer, step.ctx
        self.model = self.raw_model if cached else self.train_model  # what evaluates images
        if self._pending_optimizer:  # resuming inside this phase
            self.optimizer.load_state_dict(self._pending_optimizer)
        self._pending_optimizer = None
        if self.position.phase_epoch == 0 and self.position.step == 0:
            self.stopper.bad_epochs = 0  # patience counts within a phase
        if self.is_main:
            log.info("phase %d/%d '%s': %d epoch(s), %s lr %.3g, %d trainable / %d frozen tensors%s%s",
                     phase.index + 1, len(self.phases), phase.name, phase.epochs, phase.optim.name,
                     self.peak_lr(phase), len(sel.trainable), len(sel.frozen),
                     ", BatchNorm frozen" if frozen_bn else "", ", head on cached features" if cached else "")

    def _features(self, phase: Phase):
        features = feature_set(self.raw_model, self.splits.train, self.ctx, self.comm, self.eval_batch,
                               self.run_dir / "features", phase.name)
        if features is None:
            if self.cfg.train.cache_features == "always":
                raise ConfigError(f"phase '{phase.name}' cannot train on cached features: {self.cfg.model.name} "
                                  "transforms the head's output further", "train.cache_features", "use auto or never")
            if self.is_main:
                log.info("not caching features: %s does more after its head", self.cfg.model.name)
        return features

    def end_run_early(self) -> None:
        """End every phase as early stopping does: the run checkpoints, finishes and writes its summary.

        For callbacks (e.g. a pruned search trial) from ``on_epoch_end``, called on every rank alike."""
        self.ended_early = [True] * len(self.phases)

    def pause_run(self) -> None:
        """Stop after this epoch with a checkpoint, as a preemption does, to be continued later by a resume.

        ``fit`` returns 'paused' (no final weights, no test): a search pausing a trial at an ASHA rung. For
        callbacks from ``on_epoch_end``, called on every rank alike; after the last epoch it does nothing."""
        self.pausing = True

    def _phase_over(self, phase: Phase) -> bool:
        return self.position.phase_epoch >= phase.epochs or self.ended_early[phase.index]

    def _run_phase(self, phase: Phase) -> str:
        """Epochs until the phase is over ('completed' / 'early_stopped') or a stop request ('preempted')."""
        self._enter_phase(phase)
        self.events.emit("on_phase_start", phase)
        while not self._phase_over(phase):
            stats = self._train_one_epoch(phase)
            if stats is None:
                return "preempted"
            ended = self._end_epoch(phase, stats)
            if ended in INTERRUPTED:
                return ended
        self.events.emit("on_phase_end", phase)
        return "early_stopped" if self.ended_early[phase.index] else "completed"

    def _train_one_epoch(self, phase: Phase):
        """One epoch from the current step, cut into parts by timed checkpoints; None if preempted."""
        stats = None
        epoch = self.position.epoch
        while True:
            self.sampler.set_epoch(epoch, self.position.step)
            self.events.emit("on_stage", "train", self.global_step)
            part = train_epoch(self.train_model, self.optimizer, self.phase_loader, self.ctx, epoch, self.position.step,
                               self._should_pause, lambda *a: self._on_log(phase, *a))
            stats = part if stats is None else _merge(stats, part)
            if part.stopped_at is None or part.stopped_at >= self.steps_per_epoch:
                return stats
            self.position = dataclasses.replace(self.position, step=part.stopped_at)
            self.save()
            if self.comm.any(bool(self.stop())):
                return None

    def _should_pause(self) -> bool:
        every_s = self.cfg.train.checkpoint.every_minutes * 60
        due = every_s > 0 and time.monotonic() - self._last_save > every_s
        return self.comm.any(bool(self.stop()) or due)

    def _on_log(self, phase: Phase, epoch: int, step: int, loss: float, ips: float, lr: float) -> None:
        self.events.emit("on_log", LogPoint(phase.name, epoch, step, self.steps_per_epoch,
                                            epoch * self.steps_per_epoch + step, loss, lr, ips))

    def _end_epoch(self, phase: Phase, stats) -> str:
        """Validate, record, advance the position, checkpoint; 'preempted' when asked to stop, 'paused' when a
        callback paused the run (``pause_run``), else 'running'."""
        cfg, p = self.cfg, self.position
        self.events.emit("on_stage", "eval", (p.epoch + 1) * self.steps_per_epoch)
        val = self.objective.evaluate(self, self.splits.val)
        record = {"epoch": p.epoch, "phase": phase.name,
                  "train": {"loss": stats.loss, "lr": stats.lr, "seconds": stats.seconds,
                            "data_seconds": stats.data_seconds, "images": stats.images,
                            "images_per_second": stats.images / max(stats.seconds, 1e-9)}, "val": val}
        record["improved"] = self.stopper.update(_metric(record, self.stopper.metric), p.epoch)
        self.history.append(record)
        self.phase_epochs_run[phase.index] += 1
        if record["improved"] and self.objective.keeps_best:
            self._keep_best(p.epoch)
        if self.is_main:
            log.info("epoch %d/%d %s | %.0f img/s, data wait %.0f%%", p.epoch + 1, self.total_epochs,
                     self.objective.epoch_line(record), record["train"]["images_per_second"],
                     100 * stats.data_seconds / max(stats.seconds, 1e-9))
        self.events.emit("on_epoch_end", record)
        self.position = Position(p.phase, p.phase_epoch + 1, 0, p.epoch + 1)
        if self.stopper.should_stop:
            self.ended_early[phase.index] = True
            if self.is_main:
                log.info("early stopping: %s did not improve for %d epochs%s", self.stopper.metric,
                         self.stopper.patience, f"; ending phase '{phase.name}'" if len(self.phases) > 1 else "")
        phase_over = self._phase_over(phase)
        finished = phase_over and phase.index == len(self.phases) - 1
        stop_now = self.comm.any(bool(self.stop()))
        pause = self.pausing and not finished
        if (p.epoch + 1) % cfg.train.checkpoint.every_epochs == 0 or phase_over or stop_now or pause:
            self.save()
        if stop_now and not finished:
            return "preempted"
        return "paused" if pause else "running"

    def _keep_best(self, epoch: int) -> None:
        self.best_state = {k: v.detach().cpu().clone() for k, v in self.raw_model.state_dict().items()}
        if self.is_main and self.cfg.train.checkpoint.keep_best:
            ckpt.atomic_save({"model": self.best_state, "epoch": epoch, "metric": self.stopper.best,
                              "classes": self.classes, "preprocess": self.preprocess},
                             self.ckpt_dir / rundir.BEST)

    def _finish(self) -> dict | None:
        """The final weights saved, then the finished run scored as its objective says (None: not scored)."""
        if self.model is None:  # resumed a finished run: nothing trained in this process
            self.model = self.raw_model
        if self.is_main:
            ckpt.atomic_save(self.objective.final_weights(self), self.ckpt_dir / rundir.FINAL)
        return self.objective.test(self)

    def phase_reports(self) -> list[dict]:
        out = []
        for phase in self.phases:
            sel = self.selections.get(phase.index)
            out.append({"name": phase.name, "epochs": phase.epochs, "epochs_run": self.phase_epochs_run[phase.index],
                        "optimizer": self.objective.optimizer_name(phase), "lr_peak": self.peak_lr(phase),
                        "trainable": phase.trainable if isinstance(phase.trainable, str) else list(phase.trainable),
                        "trainable_tensors": len(sel.trainable) if sel else None,
                        "frozen_tensors": len(sel.frozen) if sel else None})
        return out

    def _plots(self, summary: dict) -> None:
        plots.learning_curve(self.history, self.run_dir / "learning_curve.png")
        best = summary["metrics"]
        cm = (best.get("test") or best.get("val") or {}).get("confusion_matrix")
        if cm:
            plots.confusion_matrix(cm, self.classes, self.run_dir / "confusion_matrix.png",
                                   "test" if best.get("test") else "validation")


def _position(state: dict) -> Position:
    if state.get("format", 1) < 2:  # written before phases existed: one phase
        return Position(0, state["epoch"], state["step_in_epoch"], state["epoch"])
    return Position(state["phase"], state["phase_epoch"], state["step"], state["epoch"])


def _merge(a, b):
    """Two parts of one epoch as one: totals, the loss weighted by steps, the later part's lr and stop."""
    return dataclasses.replace(b, loss=(a.loss * a.steps + b.loss * b.steps) / max(1, a.steps + b.steps),
                               steps=a.steps + b.steps, images=a.images + b.images, seconds=a.seconds + b.seconds,
                               data_seconds=a.data_seconds + b.data_seconds)


def _metric(record: dict, dotted: str) -> float:
    split, _, name = dotted.partition(".")
    value = record.get(split, {}).get(name)
    if not isinstance(value, (int, float)) or (isinstance(value, float) and math.isnan(value)):
        raise ConfigError(f"early-stopping metric '{dotted}' is not computed", "train.early_stopping.metric",
                          "use val.loss, val.accuracy, val.f1_macro, val.auc_ovr, ...")
    return float(value)


__all__ = ["CHECKPOINT_FORMAT", "FitResult", "Trainer", "batch_sizes"]
