"""One training epoch and one evaluation pass: functions of their arguments only.

The hot loop keeps the loss on the device and synchronises with the host only every
``log_every`` steps (to log and to agree on stopping), so GPU steps are never stalled
by Python bookkeeping.
"""
from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass

import torch

from ..data.augment import model_input
from .precision import autocast
from .schedule import lr_at


@dataclass
class StepContext:
    """What the loop needs besides model and data; built by the Trainer, updated per phase."""
    device: torch.device
    normalize: object
    augment: object
    comm: object
    amp_dtype: torch.dtype | None
    scaler: object | None
    channels_last: bool
    accumulate: int
    clip_grad_norm: float | None
    criterion: object            # (model outputs, labels) -> loss: the objective's loss (train/objective.py)
    peak_lr: float
    total_steps: int
    steps_per_epoch: int
    schedule_cfg: object
    global_batch: int
    log_every: int
    non_blocking: bool = False
    phase_first_epoch: int = 0   # the schedule restarts at each phase: lr step = steps since this epoch
    frozen_bn: tuple = ()        # BatchNorm layers kept in inference mode (frozen backbone)
    features: bool = False       # the loader yields cached backbone features, not images
    penalty: object = None       # optim.l1/l2 weight penalty (train/penalties.py); None = off


@dataclass
class EpochStats:
    loss: float = 0.0
    steps: int = 0
    images: int = 0
    seconds: float = 0.0
    data_seconds: float = 0.0
    stopped_at: int | None = None  # step_in_epoch where a stop request ended the epoch
    lr: float = 0.0


def prepare(x, ctx: StepContext, epoch: int, step: int) -> torch.Tensor:
    """A training batch as the model takes it: augmented for global step (epoch, step) on the device."""
    if ctx.features:
        return x.to(ctx.device, non_blocking=ctx.non_blocking)
    offset = ctx.comm.rank * (ctx.global_batch // ctx.comm.world_size)
    augment = lambda images: ctx.augment(images, epoch, step, offset, ctx.global_batch)  # noqa: E731
    return model_input(x, ctx.normalize, ctx.device, ctx.channels_last, ctx.non_blocking, augment)


def chunk_loss(model, xc, yc, n: int, chunks: int, ctx: StepContext) -> torch.Tensor:
    """Forward and backward of one micro-batch (``chunks`` per step of ``n`` samples); returns its loss."""
    with autocast(ctx.device, ctx.amp_dtype):
        loss = ctx.criterion(model(xc), yc)
        if chunks > 1:  # weight micro-batches by size; one chunk needs no extra kernel (x1.0 is exact)
            loss = loss * (yc.shape[0] / n)
        objective = loss + ctx.penalty() / chunks if ctx.penalty is not None else loss
        (ctx.scaler.scale(objective) if ctx.scaler else objective).backward()
    return loss


def optimizer_step(optimizer, model, comm, scaler=None, clip_grad_norm: float | None = None) -> None:
    """Clip (after unscaling), step and zero the gradients, inside the Comm's synchronised section."""
    with comm.synchronized_step(optimizer):
        if clip_grad_norm:
            if scaler:
                scaler.unscale_(optimizer)
            torch.nn.utils.clip_grad_norm_(model.parameters(), clip_grad_norm)
        if scaler:
            scaler.step(optimizer)
            scaler.update()
        else:
            optimizer.step()
    optimizer.zero_grad(set_to_none=True)


def train_epoch(model, optimizer, loader, ctx: StepContext, epoch: int, start_step: int, should_stop,
                on_log) -> EpochStats:
    """Run optimizer steps from ``start_step``; ``should_stop()`` is asked (collectively) at log points."""
    model.train()
    for module in ctx.frozen_bn:
        module.eval()
    stats = EpochStats()
    loss_sum = torch.zeros((), device=ctx.device)
    start = last = time.perf_counter()
    step = start_step
    iterator = iter(loader)  # DataLoader workers start here, before the first wait for data is timed
    t0 = time.perf_counter()
    for x, y in iterator:
        stats.data_seconds += time.perf_counter() - t0
        lr = lr_at((epoch - ctx.phase_first_epoch) * ctx.steps_per_epoch + step, ctx.total_steps,
                   ctx.steps_per_epoch, ctx.peak_lr, ctx.schedule_cfg)
        for group in optimizer.param_groups:
            group["lr"] = lr * group.get("lr_scale", 1.0)
        x = prepare(x, ctx, epoch, step)
        y = y.to(ctx.device, non_blocking=ctx.non_blocking)
        n = y.shape[0]
        chunks = max(1, min(ctx.accumulate, n))
        for i, (xc, yc) in enumerate(zip(x.chunk(chunks), y.chunk(chunks))):
            with contextlib.nullcontext() if i == chunks - 1 else ctx.comm.no_sync(model):
                loss_sum += chunk_loss(model, xc, yc, n, chunks, ctx).detach()
        optimizer_step(optimizer, model, ctx.comm, ctx.scaler, ctx.clip_grad_norm)
        stats.steps += 1
        stats.images += n * ctx.comm.world_size
        stats.lr = lr
        step += 1
        if stats.steps % ctx.log_every == 0:
            now = time.perf_counter()
            on_log(epoch, step, loss_sum.item() / stats.steps, ctx.log_every * ctx.global_batch / (now - last), lr)
            last = now
            if should_stop():
                stats.stopped_at = step
                break
        t0 = time.perf_counter()
    stats.seconds = time.perf_counter() - start
    stats.loss = ctx.comm.mean(loss_sum.item() / max(1, stats.steps)) if stats.steps else float("nan")
    return stats


@torch.no_grad()
def predict(model, loader, ctx: StepContext) -> tuple[torch.Tensor, torch.Tensor]:
    """This rank's logits and labels, on the CPU."""
    model.eval()
    outs, labels = [], []
    for x, y in loader:
        x = model_input(x, ctx.normalize, ctx.device, ctx.channels_last, ctx.non_blocking)
        with autocast(ctx.device, ctx.amp_dtype):
            outs.append(model(x).float().cpu())
        labels.append(y.cpu())
    if not outs:
        return torch.empty(0, 0), torch.empty(0, dtype=torch.int64)
    return torch.cat(outs), torch.cat(labels)


def gather_predictions(local: tuple[torch.Tensor, torch.Tensor], comm) -> tuple[torch.Tensor, torch.Tensor]:
    """Every rank gets all logits/labels in rank order: each sample exactly once."""
    parts = comm.all_gather_object((local[0].numpy(), local[1].numpy()))
    logits = [torch.from_numpy(p[0]) for p in parts if len(p[1])]
    labels = [torch.from_numpy(p[1]) for p in parts if len(p[1])]
    return torch.cat(logits), torch.cat(labels)
