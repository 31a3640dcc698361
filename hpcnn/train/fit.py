"""fit(config, world, run_dir): data, model, optimizer, loop, checkpoints, metrics, summary.

Knows nothing about launchers or Slurm: it gets a World and a Comm, and a ``stop``
callable that says "checkpoint and return now" (a preemption signal, set by run.py).
"""
from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from ..config import to_dict
from ..data.augment import BatchAugment, Normalize
from ..data.loaders import RankBatchSampler, ShardBatchSampler, make_loader
from ..data.sources import load_splits
from ..errors import ConfigError
from ..models import create_model
from . import checkpoint as ckpt
from . import plots
from .early_stop import EarlyStopper
from .logs import JsonlWriter, Progress, TensorBoard, bar
from .loop import StepContext, gather_predictions, predict, train_epoch
from .metrics import classification_metrics, scalar_metrics
from .optim import build_optimizer
from .schedule import scaled_lr
from .summary import build_summary, write_summary

log = logging.getLogger("hpcnn.train")


@dataclass
class FitResult:
    status: str  # completed | preempted | early_stopped
    summary: dict


def _batch_sizes(cfg, world_size: int) -> tuple[int, int]:
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


def _rng_state(device) -> dict:
    state = {"cpu": torch.get_rng_state()}
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def _set_rng_state(state: dict, device) -> None:
    torch.set_rng_state(state["cpu"])
    if device.type == "cuda" and "cuda" in state:
        torch.cuda.set_rng_state(state["cuda"], device)


def fit(cfg, world, comm, run_dir: Path, device: torch.device, stop=lambda: False,
        resume_state: dict | None = None) -> FitResult:
    t_start = time.time()
    run_dir = Path(run_dir)
    ckpt_dir = run_dir / "checkpoints"
    is_main = comm.is_main
    global_batch, _ = _batch_sizes(cfg, comm.world_size)

    splits = load_splits(cfg.data)
    classes = splits.classes
    normalize = Normalize.from_sample(splits.train.stats_sample(), cfg.data.normalize).to(device)
    pin = cfg.data.pin_memory and device.type == "cuda"
    sampler = RankBatchSampler(len(splits.train), global_batch, comm.rank, comm.world_size, cfg.seed,
                               cfg.train.max_steps_per_epoch)
    train_loader = make_loader(splits.train, sampler, cfg.data.num_workers, pin)
    eval_batch = max(global_batch // comm.world_size, 64)

    def eval_loader(ds):
        return make_loader(ds, ShardBatchSampler(len(ds), eval_batch, comm.rank, comm.world_size),
                           cfg.data.num_workers, pin)

    torch.manual_seed(cfg.seed)  # identical initial weights on every rank
    raw_model = create_model(cfg.model, len(classes), cfg.data.channels, cfg.data.image_size).to(device)
    if cfg.train.channels_last:
        raw_model = raw_model.to(memory_format=torch.channels_last)
    model = comm.wrap_model(raw_model, device, cfg.dist.sync_batchnorm, cfg.dist.find_unused_parameters)
    raw_model = getattr(model, "module", model)
    if cfg.train.compile:
        model = torch.compile(model)
    optimizer = comm.wrap_optimizer(build_optimizer(raw_model, cfg.optim), raw_model, accumulate=cfg.train.accumulate)
    amp_dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(cfg.train.amp) if device.type == "cuda" else None
    scaler = torch.amp.GradScaler("cuda") if amp_dtype == torch.float16 else None
    steps_per_epoch = sampler.steps_per_epoch
    peak_lr = scaled_lr(cfg.optim.lr, global_batch, cfg.schedule)
    ctx = StepContext(device=device, normalize=normalize, augment=BatchAugment(cfg.data.augment, cfg.seed),
                      comm=comm, amp_dtype=amp_dtype, scaler=scaler, channels_last=cfg.train.channels_last,
                      accumulate=cfg.train.accumulate, clip_grad_norm=cfg.optim.clip_grad_norm,
                      label_smoothing=cfg.train.label_smoothing, peak_lr=peak_lr,
                      total_steps=steps_per_epoch * cfg.train.epochs, steps_per_epoch=steps_per_epoch,
                      schedule_cfg=cfg.schedule, global_batch=global_batch, log_every=cfg.train.log_every,
                      non_blocking=pin)
    stopper = EarlyStopper(cfg.train.early_stopping)
    history: list[dict] = []
    start_epoch, start_step, best_state, elapsed_before = 0, 0, None, 0.0
    torch.manual_seed(cfg.seed + 1 + comm.rank)  # dropout streams differ per rank
    if resume_state is not None:
        _check_resumable(resume_state, cfg, global_batch, run_dir)
        raw_model.load_state_dict(resume_state["model"])
        optimizer.load_state_dict(resume_state["optimizer"])
        if scaler and resume_state.get("scaler"):
            scaler.load_state_dict(resume_state["scaler"])
        rngs = resume_state["rng"]
        if len(rngs) == comm.world_size:
            _set_rng_state(rngs[comm.rank], device)
        start_epoch, start_step = resume_state["epoch"], resume_state["step_in_epoch"]
        history = list(resume_state["history"])
        stopper.load_state_dict(resume_state["early_stop"])
        elapsed_before = resume_state.get("wall_seconds", 0.0)
        best_path = ckpt_dir / "best.pt"
        if best_path.is_file():
            best_state = ckpt.load_file(best_path)["model"]
        log.info("resumed from epoch %d step %d", start_epoch + 1, start_step)

    metrics_log = JsonlWriter(run_dir / "metrics.jsonl") if is_main else None
    if metrics_log and resume_state is not None:  # drop records written after the checkpoint we resume from
        metrics_log.path.unlink(missing_ok=True)
        for record in history:
            metrics_log.write(record)
    tb = TensorBoard(run_dir / "tb", cfg.train.tensorboard and is_main,
                     purge_step=start_epoch * steps_per_epoch + start_step if resume_state else None)
    progress = Progress(is_main)
    last_save = time.monotonic()
    every_s = cfg.train.checkpoint.every_minutes * 60

    def on_log(epoch, step, loss, ips, lr):
        gstep = epoch * steps_per_epoch + step
        tb.scalars("train", {"loss": loss, "lr": lr, "images_per_second": ips}, gstep)
        progress.update(f"epoch {epoch + 1}/{cfg.train.epochs} {bar(step, steps_per_epoch)} step {step}/"
                        f"{steps_per_epoch} loss {loss:.4f} lr {lr:.2e} {ips:,.0f} img/s")

    def should_stop():
        due = every_s > 0 and time.monotonic() - last_save > every_s
        return comm.any(bool(stop()) or due)

    def state_dict(epoch, step_in_epoch):
        return {"format": 1, "epoch": epoch, "step_in_epoch": step_in_epoch, "model": raw_model.state_dict(),
                "optimizer": optimizer.state_dict(), "scaler": scaler.state_dict() if scaler else {},
                "rng": comm.all_gather_object(_rng_state(device)), "history": history,
                "early_stop": stopper.state_dict(), "wall_seconds": elapsed_before + time.time() - t_start,
                "config": to_dict(cfg), "classes": classes, "world_size": comm.world_size,
                "global_batch": global_batch}

    def save(epoch, step_in_epoch):
        nonlocal last_save
        state = state_dict(epoch, step_in_epoch)  # collective (rng gather): every rank calls it
        if is_main:
            path = ckpt.save_checkpoint(state, ckpt_dir, cfg.train.checkpoint.keep_last)
            log.info("checkpoint %s", path.name)
        last_save = time.monotonic()

    status = "completed"
    log.info("training %s: %d train / %d val images, %d classes, global batch %d on %d rank(s), peak lr %.3g, %s",
             cfg.model.name, len(splits.train), len(splits.val), len(classes), global_batch, comm.world_size,
             peak_lr, device)
    for epoch in range(start_epoch, cfg.train.epochs):
        step, stats = (start_step if epoch == start_epoch else 0), None
        while True:  # one epoch, possibly cut by timed checkpoints or a stop request
            sampler.set_epoch(epoch, step)
            part = train_epoch(model, optimizer, train_loader, ctx, epoch, step, should_stop, on_log)
            stats = part if stats is None else _merge(stats, part)
            if part.stopped_at is None or part.stopped_at >= steps_per_epoch:
                break
            save(epoch, part.stopped_at)
            if comm.any(bool(stop())):
                status = "preempted"
                break
            step = part.stopped_at
        progress.done()
        if status == "preempted":
            break
        val = classification_metrics(*gather_predictions(predict(model, eval_loader(splits.val), ctx), comm),
                                     len(classes), cfg.train.topk, cfg.train.label_smoothing)
        record = {"epoch": epoch, "train": {"loss": stats.loss, "lr": stats.lr, "seconds": stats.seconds,
                                            "data_seconds": stats.data_seconds, "images": stats.images,
                                            "images_per_second": stats.images / max(stats.seconds, 1e-9)},
                  "val": val}
        improved = stopper.update(_metric(record, cfg.train.early_stopping.metric), epoch)
        record["improved"] = improved
        history.append(record)
        if improved:
            best_state = {k: v.detach().cpu().clone() for k, v in raw_model.state_dict().items()}
            if is_main and cfg.train.checkpoint.keep_best:
                ckpt.atomic_save({"model": best_state, "epoch": epoch, "metric": stopper.best}, ckpt_dir / "best.pt")
        if is_main:
            metrics_log.write(record)
            tb.scalars("val", scalar_metrics(val), (epoch + 1) * steps_per_epoch)
            log.info("epoch %d/%d train loss %.4f | val loss %.4f acc %.4f f1 %.4f | %.0f img/s, data wait %.0f%%",
                     epoch + 1, cfg.train.epochs, stats.loss, val["loss"], val["accuracy"], val["f1_macro"],
                     record["train"]["images_per_second"], 100 * stats.data_seconds / max(stats.seconds, 1e-9))
        stop_now = comm.any(bool(stop()))
        last_epoch = epoch + 1 == cfg.train.epochs
        if (epoch + 1) % cfg.train.checkpoint.every_epochs == 0 or last_epoch or stopper.should_stop or stop_now:
            save(epoch + 1, 0)
        if stopper.should_stop:
            status = "early_stopped"
            log.info("early stopping: %s did not improve for %d epochs", stopper.metric, stopper.patience)
            break
        if stop_now and not last_epoch:
            status = "preempted"
            break

    test = None
    if status != "preempted":
        if is_main:
            ckpt.atomic_save({"model": raw_model.state_dict(), "classes": classes}, ckpt_dir / "model_final.pt")
        if cfg.train.eval_test and splits.test is not None and len(splits.test):
            if best_state is not None:
                raw_model.load_state_dict(best_state)
            test = classification_metrics(*gather_predictions(predict(model, eval_loader(splits.test), ctx), comm),
                                          len(classes), cfg.train.topk, cfg.train.label_smoothing)
            if is_main:
                log.info("test (best epoch weights): acc %.4f f1 %.4f auc %.4f", test["accuracy"], test["f1_macro"],
                         test["auc_ovr"])
    summary = build_summary(cfg, status, history, test, classes, splits.skipped_files, global_batch, peak_lr,
                            comm.world_size, device, elapsed_before + time.time() - t_start, stopper)
    if is_main:
        write_summary(run_dir, summary)
        if cfg.train.plots and status != "preempted":
            plots.learning_curve(history, run_dir / "learning_curve.png")
            best = summary["metrics"]
            cm = (best.get("test") or best.get("val") or {}).get("confusion_matrix")
            if cm:
                plots.confusion_matrix(cm, classes, run_dir / "confusion_matrix.png",
                                       "test" if best.get("test") else "validation")
    tb.close()
    return FitResult(status, summary)


def _check_resumable(state: dict, cfg, global_batch: int, run_dir: Path) -> None:
    """A checkpoint only continues the same experiment: same model and same global batch."""
    where = f"resume from {run_dir}"
    old = state.get("config", {})
    if old.get("model") and old["model"] != to_dict(cfg)["model"]:
        raise ConfigError("the model config differs from the one the checkpoint was written with", where,
                          "resume with the run's own config.resolved.yaml (hpcnn train --resume RUN_DIR)")
    if state.get("global_batch", global_batch) != global_batch:
        raise ConfigError(f"the checkpoint was written with global batch {state['global_batch']}, this run has "
                          f"{global_batch}: the sample order would not continue", where,
                          "keep train.batch_size (and batch_scope) as they were; the number of ranks may change")


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
