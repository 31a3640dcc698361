"""The Trainer: set up once (data, model, run directory, resume), then run the job's phases.

A phase has its own epochs, optimizer, LR schedule, trainable parameters and BatchNorm
mode (``hpcnn.config.phases``); a job without ``phases`` is one phase, as before. Entering
a phase sets ``requires_grad``, re-wraps the model for DDP (which registers only trainable
parameters) and builds a fresh optimizer. Checkpoints record the ``Position`` (phase,
epoch in phase, step, epochs done), so a resumed run lands in the right phase at the right
step and continues bitwise as if never stopped (CPU). Everything else that watches
training (progress, metrics file, TensorBoard, GPU telemetry, tests) is a ``Callback``.

The Trainer knows nothing about launchers or Slurm: it gets a World-derived Comm, and a
``stop`` callable that says "checkpoint and return now" (set by a preemption signal).
"""
from __future__ import annotations

import dataclasses
import logging
import math
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from ..config import to_dict
from ..config.phases import Phase, resolve_phases
from ..data.augment import BatchAugment
from ..data.gpu_decode import resolve_decode, train_loader
from ..data.loaders import RankBatchSampler, ShardBatchSampler, make_loader
from ..errors import CheckpointError, ConfigError
from ..models.loading import brief_report
from ..models.registry import build_model
from ..models.parts import head_name
from ..results import write_summary
from . import checkpoint as ckpt
from .checkpoint import rng_state, set_rng_state
from . import plots
from .callbacks import builtin_callbacks
from .early_stop import EarlyStopper
from .events import Events, LogPoint, Position
from .features import feature_set, use_cache
from .freeze import frozen_batchnorm, param_groups, select
from .inputs import input_data, job_inputs, preprocessing
from .loop import StepContext, gather_predictions, predict, train_epoch
from .metrics import classification_metrics
from .optim import build_optimizer
from .penalties import weight_penalty
from .schedule import scaled_lr
from .summary import build_summary

log = logging.getLogger("hpcnn.train")
CHECKPOINT_FORMAT = 2


@dataclass
class FitResult:
    status: str  # completed | preempted | early_stopped
    summary: dict


def batch_sizes(cfg, world_size: int) -> tuple[int, int]:
    """(global batch, per-rank batch), checked against the number of ranks and accumulation."""
    t = cfg.train
    global_batch = t.batch_size if t.batch_scope == "global" else t.batch_size * world_size
    if global_batch % world_size:
        raise ConfigError(f"global batch {global_batch} does not split evenly over {world_size} ranks",
                          "train.batch_size", f"use a multiple of {world_size}")
    local = global_batch // world_size
    if local % t.accumulate:
        raise ConfigError(f"per-rank batch {local} is not divisible by train.accumulate={t.accumulate}",
                          "train.accumulate")
    return global_batch, local


def set_up(trainer, resume: str | None, callbacks) -> None:
    """The set-up every trainer shares (Trainer, ssl.Pretrainer): data, model, events, a fresh position.

    A run that continues from a checkpoint takes its weights from there, not from ``model.weights``.
    """
    resuming = bool(resume) and bool(ckpt.list_checkpoints(trainer.ckpt_dir))
    trainer._setup_data()
    trainer._setup_model(load_weights=not resuming)
    trainer.events = Events(trainer, [*builtin_callbacks(trainer.cfg), *callbacks])
    trainer.position = Position()
    trainer.history = []


class Trainer:
    def __init__(self, cfg, comm, run_dir: Path, device: torch.device, stop=lambda: False, callbacks=(),
                 resume: str | None = None, job=None):
        """``resume``: None (fresh), "auto" (newest checkpoint if any) or "required"."""
        self.cfg, self.comm, self.device, self.stop, self.job = cfg, comm, device, stop, job
        self.run_dir = Path(run_dir)
        self.ckpt_dir = self.run_dir / "checkpoints"
        self.is_main = comm.is_main
        self.phases: list[Phase] = resolve_phases(cfg)
        self.total_epochs = sum(p.epochs for p in self.phases)
        self.global_batch, _ = batch_sizes(cfg, comm.world_size)
        set_up(self, resume, callbacks)
        self.stopper = EarlyStopper(cfg.train.early_stopping)
        self.best_state: dict | None = None
        self.phase_epochs_run = [0] * len(self.phases)
        self.ended_early = [False] * len(self.phases)
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

    def _eval_loader(self, dataset):
        sampler = ShardBatchSampler(len(dataset), self.eval_batch, self.comm.rank, self.comm.world_size)
        return make_loader(dataset, sampler, self.cfg.data.num_workers, self.pin)

    def _setup_model(self, load_weights: bool) -> None:
        cfg, device = self.cfg, self.device
        torch.manual_seed(cfg.seed)  # identical initial weights on every rank
        model_cfg = cfg.model if load_weights else dataclasses.replace(cfg.model, weights=None)
        model, report = build_model(model_cfg, len(self.classes), cfg.data.channels, cfg.data.image_size,
                                    self.classes)
        self.weights_report = brief_report(report)
        model = model.to(device)
        if cfg.train.channels_last:
            model = model.to(memory_format=torch.channels_last)
        self.raw_model = model
        amp = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(cfg.train.amp) if device.type == "cuda" else None
        self.scaler = torch.amp.GradScaler("cuda") if amp == torch.float16 else None
        t = cfg.train
        self.ctx = StepContext(device=device, normalize=self.normalize, augment=BatchAugment(cfg.data.augment, cfg.seed),
                               comm=self.comm, amp_dtype=amp, scaler=self.scaler, channels_last=t.channels_last,
                               accumulate=t.accumulate, clip_grad_norm=cfg.optim.clip_grad_norm,
                               label_smoothing=t.label_smoothing, peak_lr=0.0, total_steps=0,
                               steps_per_epoch=self.steps_per_epoch, schedule_cfg=cfg.schedule,
                               global_batch=self.global_batch, log_every=t.log_every, non_blocking=self.pin)

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
                raise CheckpointError("no checkpoint to resume from", str(self.ckpt_dir))
            return None
        state, path = found
        self._check_resumable(state)
        self.raw_model.load_state_dict(state["model"])
        if self.scaler and state.get("scaler"):
            self.scaler.load_state_dict(state["scaler"])
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
        if (self.ckpt_dir / "best.pt").is_file():
            self.best_state = ckpt.load_file(self.ckpt_dir / "best.pt")["model"]
        if self.is_main:
            p = self.position
            log.info("resuming from %s: phase %d/%d, epoch %d, step %d", path, min(p.phase + 1, len(self.phases)),
                     len(self.phases), p.epoch + 1, p.step)
        return path

    def _check_resumable(self, state: dict) -> None:
        """A checkpoint only continues the same experiment: same model, global batch and phases."""
        where = f"resume from {self.run_dir}"
        old = state.get("config", {})
        if old.get("model") and old["model"] != to_dict(self.cfg)["model"]:
            raise ConfigError("the model config differs from the one the checkpoint was written with", where,
                              "resume with the run's own config.resolved.yaml (hpcnn train --resume RUN_DIR)")
        if state.get("global_batch", self.global_batch) != self.global_batch:
            raise ConfigError(f"the checkpoint was written with global batch {state['global_batch']}, this run has "
                              f"{self.global_batch}: the sample order would not continue", where,
                              "keep train.batch_size (and batch_scope) as they were; the number of ranks may change")
        if "phases" in old and len(old["phases"] or []) != len(self.cfg.phases):
            raise ConfigError("the checkpoint was written with a different list of phases", where,
                              "resume with the run's own config (phases may get more epochs, not be added)")

    def _state(self) -> dict:
        """Everything to continue exactly; collective (gathers every rank's RNG state)."""
        return {"format": CHECKPOINT_FORMAT, **dataclasses.asdict(self.position),
                "step_in_epoch": self.position.step, "model": self.raw_model.state_dict(),
                "optimizer": self.optimizer.state_dict() if self.optimizer is not None else {},
                "scaler": self.scaler.state_dict() if self.scaler else {},
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
        cfg = self.cfg
        if self.is_main:
            log.info("training %s: %d train / %d val images, %d classes, global batch %d on %d rank(s), "
                     "%d phase(s), %d epochs, %s", cfg.model.name, len(self.splits.train), len(self.splits.val),
                     len(self.classes), self.global_batch, self.comm.world_size, len(self.phases),
                     self.total_epochs, self.device)
        self.events.emit("on_run_start")
        status = "completed"
        while self.position.phase < len(self.phases):
            phase = self.phases[self.position.phase]
            if self._phase_over(phase):  # all its epochs run (or stopped early): on to the next
                status = "early_stopped" if self.ended_early[phase.index] else "completed"
                self.position = Position(phase.index + 1, 0, 0, self.position.epoch)
                self._pending_optimizer = None  # the next phase starts with a fresh optimizer
                continue
            status = self._run_phase(phase)
            if status == "preempted":
                break
        test = self._test() if status != "preempted" else None
        summary = build_summary(self, status, test, self.elapsed_before + time.time() - self.t_start)
        self.events.emit("on_run_end", summary)
        if self.is_main:
            write_summary(self.run_dir, summary)
            if cfg.train.plots and status != "preempted":
                self._plots(summary)
        return FitResult(status, summary)

    def _enter_phase(self, phase: Phase) -> None:
        """requires_grad, a fresh DDP wrap and optimizer, the phase's schedule in the step context."""
        cfg = self.cfg
        sel = self.selections[phase.index] = select(self.raw_model, phase)
        self.model = self.train_model = None  # drop the previous phase's DDP wrapper (and its gradient hooks)
        frozen_bn = frozen_batchnorm(self.raw_model, phase)
        features = self._features(phase) if use_cache(cfg, phase, self.raw_model, frozen_bn) else None
        cached = features is not None
        self.phase_loader = make_loader(features, self.sampler, 0, self.pin) if cached else self.train_loader
        trained = getattr(self.raw_model, head_name(self.raw_model)) if cached else self.raw_model
        wrapped = self.comm.wrap_model(trained, self.device, cfg.dist.sync_batchnorm, cfg.dist.find_unused_parameters)
        if not cached:
            self.raw_model = getattr(wrapped, "module", wrapped)  # SyncBatchNorm conversion makes a new module
        self.train_model = torch.compile(wrapped) if cfg.train.compile else wrapped
        self.model = self.raw_model if cached else self.train_model  # what evaluates images
        groups = param_groups(self.raw_model, phase, phase.optim.weight_decay)
        self.optimizer = self.comm.wrap_optimizer(build_optimizer(groups, phase.optim), self.raw_model,
                                                  accumulate=cfg.train.accumulate)
        if self._pending_optimizer:  # resuming inside this phase
            self.optimizer.load_state_dict(self._pending_optimizer)
        self._pending_optimizer = None
        first_epoch = self.position.epoch - self.position.phase_epoch
        self.ctx = dataclasses.replace(self.ctx, peak_lr=self.peak_lr(phase), schedule_cfg=phase.schedule,
                                       total_steps=self.steps_per_epoch * phase.epochs,
                                       clip_grad_norm=phase.optim.clip_grad_norm, phase_first_epoch=first_epoch,
                                       frozen_bn=() if cached else frozen_bn, features=cached,
                                       penalty=weight_penalty(self.raw_model, phase.optim.l1, phase.optim.l2))
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

    def _phase_over(self, phase: Phase) -> bool:
        return self.position.phase_epoch >= phase.epochs or self.ended_early[phase.index]

    def _run_phase(self, phase: Phase) -> str:
        """Epochs until the phase is over ('completed' / 'early_stopped') or a stop request ('preempted')."""
        self._enter_phase(phase)
        self.events.emit("on_phase_start", phase)
        while not self._phase_over(phase):
            stats = self._train_one_epoch(phase)
            if stats is None or self._end_epoch(phase, stats) == "preempted":
                return "preempted"
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

    def _evaluate(self, dataset) -> dict:
        logits, labels = gather_predictions(predict(self.model, self._eval_loader(dataset), self.ctx), self.comm)
        return classification_metrics(logits, labels, len(self.classes), self.cfg.train.topk,
                                      self.cfg.train.label_smoothing)

    def _end_epoch(self, phase: Phase, stats) -> str:
        """Validate, record, advance the position, checkpoint; 'preempted' when asked to stop, else 'running'."""
        cfg, p = self.cfg, self.position
        self.events.emit("on_stage", "eval", (p.epoch + 1) * self.steps_per_epoch)
        val = self._evaluate(self.splits.val)
        record = {"epoch": p.epoch, "phase": phase.name,
                  "train": {"loss": stats.loss, "lr": stats.lr, "seconds": stats.seconds,
                            "data_seconds": stats.data_seconds, "images": stats.images,
                            "images_per_second": stats.images / max(stats.seconds, 1e-9)}, "val": val}
        record["improved"] = self.stopper.update(_metric(record, cfg.train.early_stopping.metric), p.epoch)
        self.history.append(record)
        self.phase_epochs_run[phase.index] += 1
        if record["improved"]:
            self._keep_best(p.epoch)
        if self.is_main:
            log.info("epoch %d/%d train loss %.4f | val loss %.4f acc %.4f f1 %.4f | %.0f img/s, data wait %.0f%%",
                     p.epoch + 1, self.total_epochs, stats.loss, val["loss"], val["accuracy"], val["f1_macro"],
                     record["train"]["images_per_second"], 100 * stats.data_seconds / max(stats.seconds, 1e-9))
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
        if (p.epoch + 1) % cfg.train.checkpoint.every_epochs == 0 or phase_over or stop_now:
            self.save()
        return "preempted" if stop_now and not finished else "running"

    def _keep_best(self, epoch: int) -> None:
        self.best_state = {k: v.detach().cpu().clone() for k, v in self.raw_model.state_dict().items()}
        if self.is_main and self.cfg.train.checkpoint.keep_best:
            ckpt.atomic_save({"model": self.best_state, "epoch": epoch, "metric": self.stopper.best,
                              "classes": self.classes, "preprocess": self.preprocess},
                             self.ckpt_dir / "best.pt")

    def _test(self) -> dict | None:
        """Final weights saved, then the test split scored with the best epoch's weights."""
        if self.model is None:  # resumed a finished run: nothing trained in this process
            self.model = self.raw_model
        if self.is_main:
            ckpt.atomic_save({"model": self.raw_model.state_dict(), "classes": self.classes,
                              "preprocess": self.preprocess},
                             self.ckpt_dir / "model_final.pt")
        if not (self.cfg.train.eval_test and self.splits.test is not None and len(self.splits.test)):
            return None
        if self.best_state is not None:
            self.raw_model.load_state_dict(self.best_state)
        self.events.emit("on_stage", "test", self.global_step)
        test = self._evaluate(self.splits.test)
        if self.is_main:
            log.info("test (best epoch weights): acc %.4f f1 %.4f auc %.4f", test["accuracy"], test["f1_macro"],
                     test["auc_ovr"])
        return test

    def phase_reports(self) -> list[dict]:
        out = []
        for phase in self.phases:
            sel = self.selections.get(phase.index)
            out.append({"name": phase.name, "epochs": phase.epochs, "epochs_run": self.phase_epochs_run[phase.index],
                        "optimizer": phase.optim.name, "lr_peak": self.peak_lr(phase),
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
    a.loss = (a.loss * a.steps + b.loss * b.steps) / max(1, a.steps + b.steps)
    a.steps += b.steps
    a.images += b.images
    a.seconds += b.seconds
    a.data_seconds += b.data_seconds
    a.lr = b.lr
    a.stopped_at = b.stopped_at
    return a


def _metric(record: dict, dotted: str) -> float:
    split, _, name = dotted.partition(".")
    value = record.get(split, {}).get(name)
    if not isinstance(value, (int, float)) or (isinstance(value, float) and math.isnan(value)):
        raise ConfigError(f"early-stopping metric '{dotted}' is not computed", "train.early_stopping.metric",
                          "use val.loss, val.accuracy, val.f1_macro, val.auc_ovr, ...")
    return float(value)


__all__ = ["FitResult", "Trainer", "batch_sizes", "set_up"]
