"""A SimCLR pretraining run, and the linear probe that measures what it learned.

``Pretrainer`` has the Trainer's constructor and ``fit()``, so ``hpcnn.run.run_job`` starts it
for ``ssl.method: simclr`` and everything around a run stays as it is: launchers, the run
directory, ``metrics.jsonl`` (the contrastive loss per epoch), TensorBoard, GPU telemetry,
preemption checkpoints and ``--resume``, ``summary.json`` (``hpcnn.results`` keys only).
Labels are never used for training: the loader's labels are dropped unread.

What it leaves for the next job: ``checkpoints/model_final.pt`` holds ``{"model": ...}``, the
state_dict of the *configured classifier* (``model.name``) with its head as initialised, so
``model.weights: <this run dir>`` starts a fine-tune or feature-extraction job from the
pretrained backbone with any number of classes (the head is the part that does not match).
At the end a linear probe (logistic regression on the frozen backbone's features, train
split -> val/test) gives the standard measure of the representation: ``test.accuracy``.
"""
from __future__ import annotations

import dataclasses
import logging
import time
from pathlib import Path
from types import SimpleNamespace

import torch
import torch.nn.functional as F

from ..config import to_dict
from ..config.phases import resolve_phases
from ..config.schema import EarlyStopConfig
from ..data.loaders import RankBatchSampler, ShardBatchSampler, make_loader
from ..dist import SingleComm
from ..errors import CheckpointError, ConfigError
from ..models.registry import build_model
from ..results import write_summary
from ..models.loading import brief_report
from ..train import checkpoint as ckpt
from ..train.early_stop import EarlyStopper
from ..train.events import LogPoint, Position
from ..train.freeze import param_groups
from ..train.inputs import job_inputs
from ..train.loop import EpochStats, gather_predictions, optimizer_step, predict
from ..train.metrics import classification_metrics
from ..train.optim import build_optimizer
from ..train.schedule import lr_at
from ..train.summary import build_summary
from ..train.checkpoint import rng_state, set_rng_state
from ..train.trainer import FitResult, Trainer, batch_sizes, set_up
from .simclr import LARS, Backbone, SimCLR, TwoViews, ViewSettings, simclr_loss

log = logging.getLogger("hpcnn.train")
CHECKPOINT_KIND = "simclr"
VAL_EPOCH = -1  # validation views are drawn as if in this epoch: the same views every epoch


class Pretrainer:
    """SimCLR on the training split; constructor and ``fit()`` as ``hpcnn.train.trainer.Trainer``."""

    # The Trainer's own code where the logic is the same: checkpoint writing (``_state`` differs),
    # the pause test at log points, the LR after scaling, the global step.
    save = Trainer.save
    _should_pause = Trainer._should_pause
    peak_lr = Trainer.peak_lr
    global_step = Trainer.global_step

    def __init__(self, cfg, comm, run_dir: Path, device: torch.device, stop=lambda: False, callbacks=(),
                 resume: str | None = None, job=None):
        if cfg.ssl.method != "simclr":
            raise ConfigError(f"ssl.method is {cfg.ssl.method!r}: nothing to pretrain", "ssl.method")
        self.cfg, self.comm, self.device, self.stop, self.job = cfg, comm, device, stop, job
        self.run_dir = Path(run_dir)
        self.ckpt_dir = self.run_dir / "checkpoints"
        self.is_main = comm.is_main
        self.phases = resolve_phases(cfg)
        if len(self.phases) != 1:
            raise ConfigError("SimCLR pretraining is one phase; 'phases' belong to the job that fine-tunes",
                              "phases", "pretrain with train.epochs, then start the fine-tune job with "
                                        "model.weights: <this run dir>")
        self.phase = self.phases[0]
        self.total_epochs = self.phase.epochs
        if cfg.train.accumulate != 1:
            raise ConfigError("gradient accumulation would split the global batch, and with it the negatives "
                              "of the contrastive loss", "train.accumulate", "use 1 (spread the batch over more "
                                                                             "ranks instead)")
        self.global_batch, self.local_batch = batch_sizes(cfg, comm.world_size)
        set_up(self, resume, callbacks)
        self.stopper = EarlyStopper(EarlyStopConfig(metric="val.contrastive_loss" if self.val_loader else
                                                    "train.loss", mode="min"))
        self.elapsed_before = 0.0
        self.model = self.optimizer = None
        self._pending_optimizer: dict | None = None
        self._last_save = time.monotonic()
        torch.manual_seed(cfg.seed + 1 + comm.rank)
        self.resumed_from = self._resume(resume)

    # ------------------------------------------------------------------ set-up
    def _setup_data(self) -> None:
        cfg, comm = self.cfg, self.comm
        self.splits, normalize = job_inputs(cfg, announce=comm.is_main)
        self.classes = self.splits.classes
        self.normalize = normalize.to(self.device)
        self.pin = cfg.data.pin_memory and self.device.type == "cuda"
        workers, cap = cfg.data.num_workers, cfg.train.max_steps_per_epoch
        self.sampler = RankBatchSampler(len(self.splits.train), self.global_batch, comm.rank, comm.world_size,
                                        cfg.seed, cap)
        self.train_loader = make_loader(self.splits.train, self.sampler, workers, self.pin)
        self.steps_per_epoch = self.sampler.steps_per_epoch
        self.val_loader = None  # the contrastive loss on fixed views of the validation split, if it fills a batch
        if len(self.splits.val) >= self.global_batch:
            val = RankBatchSampler(len(self.splits.val), self.global_batch, comm.rank, comm.world_size, cfg.seed, cap)
            self.val_loader = make_loader(self.splits.val, val, workers, self.pin)

    def _setup_model(self, load_weights: bool) -> None:
        cfg, data = self.cfg, self.cfg.data
        torch.manual_seed(cfg.seed)  # identical initial weights on every rank
        model_cfg = cfg.model if load_weights else dataclasses.replace(cfg.model, weights=None)
        classifier, report = build_model(model_cfg, len(self.classes), data.channels, data.image_size)
        self.weights_report = brief_report(report)
        self.backbone = Backbone(classifier, data.channels, data.image_size)
        model = SimCLR(self.backbone, cfg.ssl.projection_hidden, cfg.ssl.projection_dim).to(self.device)
        if cfg.train.channels_last:
            model = model.to(memory_format=torch.channels_last)
        self.raw_model = model
        self.views = TwoViews(ViewSettings.from_config(cfg), cfg.seed)
        cuda = self.device.type == "cuda"
        self.amp_dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(cfg.train.amp) if cuda else None
        self.scaler = torch.amp.GradScaler("cuda") if self.amp_dtype == torch.float16 else None

    def wrap(self) -> None:
        """Wrap the model for DDP and build the optimizer (``fit`` starts with this)."""
        cfg, phase = self.cfg, self.phase
        model = self.comm.wrap_model(self.raw_model, self.device, cfg.dist.sync_batchnorm,
                                     cfg.dist.find_unused_parameters)
        self.raw_model = getattr(model, "module", model)
        self.model = torch.compile(model) if cfg.train.compile else model
        groups = param_groups(self.raw_model, phase, phase.optim.weight_decay)
        if getattr(cfg.ssl, "optimizer", "optim") == "lars":
            opt = LARS(groups, lr=phase.optim.lr, momentum=phase.optim.momentum)
        else:
            opt = build_optimizer(groups, phase.optim)
        self.optimizer = self.comm.wrap_optimizer(opt, self.raw_model, accumulate=1)
        if self._pending_optimizer:
            self.optimizer.load_state_dict(self._pending_optimizer)
        self._pending_optimizer = None

    def contrastive_loss(self, x: torch.Tensor, epoch: int, step: int) -> torch.Tensor:
        """This rank's uint8 images of global step (epoch, step) -> two views -> NT-Xent over all ranks."""
        x = x.to(self.device, non_blocking=self.pin).float().div_(255.0)
        v1, v2 = self.views(x, epoch, step, self.comm.rank * self.local_batch, self.global_batch)
        views = self.normalize(torch.cat([v1, v2]))
        if self.cfg.train.channels_last:
            views = views.contiguous(memory_format=torch.channels_last)
        if self.amp_dtype is None:
            return simclr_loss(self.model, views, self.cfg.ssl.temperature, self.comm)
        with torch.autocast(self.device.type, dtype=self.amp_dtype):
            return simclr_loss(self.model, views, self.cfg.ssl.temperature, self.comm)

    # ------------------------------------------------------------------ checkpoints and resume
    def _state(self) -> dict:
        """Everything to continue exactly; collective (gathers every rank's RNG state)."""
        return {"format": 2, "kind": CHECKPOINT_KIND, **dataclasses.asdict(self.position),
                "step_in_epoch": self.position.step, "model": self.raw_model.state_dict(),
                "optimizer": self.optimizer.state_dict() if self.optimizer is not None else {},
                "scaler": self.scaler.state_dict() if self.scaler else {},
                "rng": self.comm.all_gather_object(rng_state(self.device)), "history": self.history,
                "early_stop": self.stopper.state_dict(), "config": to_dict(self.cfg), "classes": self.classes,
                "wall_seconds": self.elapsed_before + time.time() - self.t_start,
                "world_size": self.comm.world_size, "global_batch": self.global_batch}

    def _resume(self, mode: str | None) -> Path | None:
        found = ckpt.load_latest(self.ckpt_dir) if mode else None
        if found is None:
            if mode and mode != "auto":
                raise CheckpointError("no checkpoint to resume from", str(self.ckpt_dir))
            return None
        state, path = found
        where = f"resume from {self.run_dir}"
        if state.get("kind") != CHECKPOINT_KIND:
            raise CheckpointError(f"{path.name} is not a SimCLR pretraining checkpoint", where,
                                  "resume with the run's own config.resolved.yaml (hpcnn train --resume RUN_DIR)")
        if state["config"]["model"] != to_dict(self.cfg)["model"] or state["global_batch"] != self.global_batch:
            raise ConfigError("the model or the global batch differ from the checkpoint's", where,
                              "resume with the run's own config (the number of ranks may change)")
        self.raw_model.load_state_dict(state["model"])
        if self.scaler and state.get("scaler"):
            self.scaler.load_state_dict(state["scaler"])
        if len(state["rng"]) == self.comm.world_size:
            set_rng_state(state["rng"][self.comm.rank], self.device)
        self.position = Position(state["phase"], state["phase_epoch"], state["step"], state["epoch"])
        self.history = list(state["history"])
        self.stopper.load_state_dict(state["early_stop"])
        self.elapsed_before = state["wall_seconds"]
        self._pending_optimizer = state["optimizer"] or None
        if self.is_main:
            log.info("resuming from %s: epoch %d, step %d", path, self.position.epoch + 1, self.position.step)
        return path

    # ------------------------------------------------------------------ running
    def fit(self) -> FitResult:
        self.t_start = time.time()
        cfg = self.cfg
        if self.is_main:
            log.info("SimCLR pretraining %s: %d train images (labels unused), global batch %d on %d rank(s), "
                     "%d epochs, temperature %g, %s", cfg.model.name, len(self.splits.train), self.global_batch,
                     self.comm.world_size, self.total_epochs, cfg.ssl.temperature, self.device)
        self.wrap()
        self.events.emit("on_run_start")
        self.events.emit("on_phase_start", self.phase)
        status = "completed"
        while self.position.epoch < self.total_epochs:
            stats = self._train_epoch(self.position.epoch)
            if stats is None or self._end_epoch(stats):
                status = "preempted"
                break
        probe = None
        if status != "preempted":
            self.events.emit("on_phase_end", self.phase)
            if self.is_main:
                ckpt.atomic_save({"model": self.backbone.classifier_state_dict(), "classes": self.classes,
                                  "ssl": to_dict(cfg)["ssl"]}, self.ckpt_dir / "model_final.pt")
            if getattr(cfg.ssl, "linear_probe", True):
                probe = linear_probe(self.backbone, self.splits, self.normalize, self.device, self.comm,
                                     topk=cfg.train.topk, amp_dtype=self.amp_dtype)
        summary = build_summary(self, status, None, self.elapsed_before + time.time() - self.t_start)
        if probe:
            summary["metrics"] = {"val": {**probe["val"], **summary["metrics"]["val"]}, "test": probe["test"]}
        self.events.emit("on_run_end", summary)
        if self.is_main:
            write_summary(self.run_dir, summary)
        return FitResult(status, summary)

    def _train_epoch(self, epoch: int) -> EpochStats | None:
        """Optimizer steps from the current position to the end of the epoch; None when preempted."""
        cfg, opt = self.cfg, self.optimizer
        self.model.train()
        self.sampler.set_epoch(epoch, self.position.step)
        total_steps = self.steps_per_epoch * self.total_epochs
        stats = EpochStats()
        loss_sum = torch.zeros((), device=self.device)
        start = last = time.perf_counter()
        step = self.position.step
        iterator = iter(self.train_loader)
        while True:
            t0 = time.perf_counter()
            try:
                x, _ = next(iterator)  # labels are not used
            except StopIteration:
                break
            stats.data_seconds += time.perf_counter() - t0
            lr = lr_at(epoch * self.steps_per_epoch + step, total_steps, self.steps_per_epoch,
                       self.peak_lr(self.phase), self.phase.schedule)
            for group in opt.param_groups:
                group["lr"] = lr * group.get("lr_scale", 1.0)
            loss = self.contrastive_loss(x, epoch, step)
            (self.scaler.scale(loss) if self.scaler else loss).backward()
            optimizer_step(self.optimizer, self.raw_model, self.comm, self.scaler, self.phase.optim.clip_grad_norm)
            loss_sum += loss.detach()
            step += 1
            stats.steps, stats.images, stats.lr = stats.steps + 1, stats.images + self.global_batch, lr
            if stats.steps % cfg.train.log_every == 0:
                now = time.perf_counter()
                self.events.emit("on_log", LogPoint(self.phase.name, epoch, step, self.steps_per_epoch,
                                                    epoch * self.steps_per_epoch + step, loss_sum.item() / stats.steps,
                                                    lr, cfg.train.log_every * self.global_batch / (now - last)))
                last = now
                self.position = dataclasses.replace(self.position, step=step)
                if self._pause():
                    return None
        stats.seconds = time.perf_counter() - start
        stats.loss = self.comm.mean(loss_sum.item() / max(1, stats.steps)) if stats.steps else float("nan")
        return stats

    def _pause(self) -> bool:
        """At a log point: checkpoint if asked to stop (-> True) or when a timed checkpoint is due."""
        if not self._should_pause():
            return False
        self.save()
        return self.comm.any(bool(self.stop()))

    @torch.no_grad()
    def val_loss(self) -> float | None:
        """Contrastive loss on the validation split, with the same views every epoch."""
        if self.val_loader is None:
            return None
        self.model.eval()
        total, steps = torch.zeros((), device=self.device), 0
        for step, (x, _) in enumerate(self.val_loader):
            total += self.contrastive_loss(x, VAL_EPOCH, step).detach()
            steps += 1
        return self.comm.mean(total.item() / max(1, steps))

    def _end_epoch(self, stats: EpochStats) -> bool:
        """Validate, record, advance, checkpoint; True when a stop request ends the run here."""
        cfg, p = self.cfg, self.position
        val = self.val_loss()
        record = {"epoch": p.epoch, "phase": self.phase.name,
                  "train": {"loss": stats.loss, "lr": stats.lr, "seconds": stats.seconds,
                            "data_seconds": stats.data_seconds, "images": stats.images,
                            "images_per_second": stats.images / max(stats.seconds, 1e-9)},
                  "val": {} if val is None else {"contrastive_loss": val}}
        record["improved"] = self.stopper.update(stats.loss if val is None else val, p.epoch)
        self.history.append(record)
        if self.is_main:
            log.info("epoch %d/%d contrastive loss: train %.4f%s | %.0f img/s", p.epoch + 1, self.total_epochs,
                     stats.loss, "" if val is None else f" val {val:.4f}", record["train"]["images_per_second"])
        self.events.emit("on_epoch_end", record)
        done = p.epoch + 1 == self.total_epochs
        self.position = Position(1 if done else 0, 0 if done else p.phase_epoch + 1, 0, p.epoch + 1)
        stop_now = self.comm.any(bool(self.stop()))
        if (p.epoch + 1) % cfg.train.checkpoint.every_epochs == 0 or done or stop_now:
            self.save()
        return stop_now and not done

    def phase_reports(self) -> list[dict]:
        lars = getattr(self.cfg.ssl, "optimizer", "optim") == "lars"
        return [{"name": self.phase.name, "epochs": self.total_epochs, "epochs_run": len(self.history),
                 "optimizer": "lars" if lars else self.phase.optim.name, "lr_peak": self.peak_lr(self.phase),
                 "trainable": "all", "trainable_tensors": sum(1 for _ in self.raw_model.parameters()),
                 "frozen_tensors": 0}]


# ---------------------------------------------------------------------------------------------- linear probe
def extract_features(backbone, dataset, normalize, device, comm=None, batch: int = 256, amp_dtype=None):
    """(features, labels) of every image of ``dataset``, in order, on every rank (each rank computes a shard)."""
    comm = comm or SingleComm()
    ctx = SimpleNamespace(device=device, normalize=normalize, channels_last=False, amp_dtype=amp_dtype,
                          non_blocking=False)
    loader = make_loader(dataset, ShardBatchSampler(len(dataset), batch, comm.rank, comm.world_size), 0, False)
    was_training = backbone.training
    try:
        return gather_predictions(predict(backbone, loader, ctx), comm)
    finally:
        backbone.train(was_training)


class LinearProbe:
    """Multinomial logistic regression on standardised features: full-batch L-BFGS, deterministic."""

    def __init__(self, features: torch.Tensor, labels: torch.Tensor, num_classes: int, l2: float = 1e-4,
                 max_iter: int = 500):
        x = features.double()
        self.mean, self.std = x.mean(0), x.std(0).clamp_min(1e-6)
        x = (x - self.mean) / self.std
        self.linear = torch.nn.Linear(x.shape[1], num_classes).double()
        torch.nn.init.zeros_(self.linear.weight)
        torch.nn.init.zeros_(self.linear.bias)
        opt = torch.optim.LBFGS(self.linear.parameters(), lr=1, max_iter=max_iter, history_size=20,
                                tolerance_grad=1e-7, tolerance_change=1e-10, line_search_fn="strong_wolfe")
        y = labels.long()

        def closure():
            opt.zero_grad()
            loss = F.cross_entropy(self.linear(x), y) + 0.5 * l2 * self.linear.weight.pow(2).sum()
            loss.backward()
            return loss

        opt.step(closure)

    @torch.no_grad()
    def logits(self, features: torch.Tensor) -> torch.Tensor:
        return self.linear((features.double() - self.mean) / self.std).float()


def linear_probe(backbone, splits, normalize, device, comm=None, topk: int = 3, l2: float = 1e-4,
                 amp_dtype=None) -> dict:
    """Train a linear classifier on the frozen backbone's features of the training split.

    Returns ``{"val": metrics, "test": metrics or None}`` (``hpcnn.train.metrics``). Features are
    computed once, in inference mode; rank 0 fits the probe and shares the result.
    """
    comm = comm or SingleComm()
    feats = {name: extract_features(backbone, data, normalize, device, comm, amp_dtype=amp_dtype)
             for name, data in (("train", splits.train), ("val", splits.val), ("test", splits.test))
             if data is not None and len(data)}
    result = None
    if comm.is_main:
        t0 = time.perf_counter()
        k = len(splits.classes)
        probe = LinearProbe(*feats["train"], k, l2=l2)
        result = {"val": None, "test": None}
        for name in result:
            if name in feats:
                features, labels = feats[name]
                result[name] = classification_metrics(probe.logits(features), labels, k, topk)
        log.info("linear probe on %d-d features of %d images (%.1f s): val acc %.4f%s", feats["train"][0].shape[1],
                 len(feats["train"][1]), time.perf_counter() - t0, result["val"]["accuracy"],
                 f", test acc {result['test']['accuracy']:.4f}" if result["test"] else "")
    return comm.broadcast_object(result)


def probe_weights(cfg, weights=None, device=None) -> dict:
    """Linear probe of ``cfg.model``'s backbone on ``cfg.data``, in this process.

    ``weights``: anything ``model.weights`` takes (an hpcnn run directory, a state_dict file, ...),
    or None for the random initialisation of seed ``cfg.seed`` (the baseline).
    """
    device = torch.device(device or "cpu")
    splits, normalize = job_inputs(cfg)
    normalize = normalize.to(device)
    torch.manual_seed(cfg.seed)
    model_cfg = dataclasses.replace(cfg.model, weights=str(weights) if weights is not None else None)
    classifier, _ = build_model(model_cfg, len(splits.classes), cfg.data.channels, cfg.data.image_size)
    backbone = Backbone(classifier, cfg.data.channels, cfg.data.image_size).to(device)
    return linear_probe(backbone, splits, normalize, device, topk=cfg.train.topk)


def run_pretrain(cfg, comm, run_dir, device, stop=lambda: False, callbacks=(), resume=None, job=None) -> FitResult:
    """Pretrain in this process (every rank calls it); ``hpcnn.run.run_job`` does this for ssl.method simclr."""
    return Pretrainer(cfg, comm, run_dir, device, stop, callbacks, resume, job).fit()


__all__ = ["LinearProbe", "Pretrainer", "extract_features", "linear_probe", "probe_weights",
           "run_pretrain"]
