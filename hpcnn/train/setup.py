"""The set-up of a training step, shared by the Trainer and ``hpcnn bench`` (which times exactly that step).

batch sizes -> model (seeded: identical on every rank) -> step context (precision, augmentation, loss)
-> per phase: DDP wrap, ``torch.compile``, optimizer, the phase's schedule and penalty.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import torch

from ..errors import ConfigError
from .loop import StepContext
from .freeze import param_groups
from .penalties import weight_penalty
from .precision import amp_dtype, grad_scaler
from .schedule import scaled_lr


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


def new_model(cfg, objective, device: torch.device, num_classes: int, classes: list | None = None,
              load_weights: bool = True):
    """The objective's model on ``device`` from seed ``cfg.seed`` (identical on every rank), and its weights report.

    ``load_weights=False``: random initialisation (a resumed run takes its weights from the checkpoint).
    """
    torch.manual_seed(cfg.seed)
    model_cfg = cfg.model if load_weights else dataclasses.replace(cfg.model, weights=None)
    model, report = objective.build_model(model_cfg, num_classes, classes)
    model = model.to(device)
    if cfg.train.channels_last:
        model = model.to(memory_format=torch.channels_last)
    return model, report


def step_context(cfg, comm, device: torch.device, objective, normalize, steps_per_epoch: int, global_batch: int,
                 non_blocking: bool) -> StepContext:
    """What the loop needs besides model and data, before any phase fills in its schedule."""
    t = cfg.train
    amp = amp_dtype(t.amp, device)
    return StepContext(device=device, normalize=normalize, augment=objective.augment(), comm=comm, amp_dtype=amp,
                       scaler=grad_scaler(amp), channels_last=t.channels_last, accumulate=t.accumulate,
                       clip_grad_norm=cfg.optim.clip_grad_norm, criterion=objective.criterion(comm), peak_lr=0.0,
                       total_steps=0, steps_per_epoch=steps_per_epoch, schedule_cfg=cfg.schedule,
                       global_batch=global_batch, log_every=t.log_every, non_blocking=non_blocking)


@dataclass
class PhaseStep:
    raw_model: torch.nn.Module     # the model (after a SyncBatchNorm conversion, the converted one)
    wrapped: torch.nn.Module       # the DDP wrapper (or the module itself): owns the gradient buckets
    train_model: torch.nn.Module   # what the loop calls (compiled when train.compile)
    optimizer: object
    ctx: StepContext


def phase_step(cfg, comm, device, objective, raw_model, phase, ctx: StepContext, frozen_bn: tuple = (),
               head=None, first_epoch: int = 0) -> PhaseStep:
    """Wrap, compile and optimizer for ``phase`` (after ``freeze.select``), and its schedule in the context.

    ``head``: train only this module, on cached backbone features; ``first_epoch``: the phase's first epoch.
    """
    wrapped = comm.wrap_model(raw_model if head is None else head, device, cfg.dist.sync_batchnorm,
                              cfg.dist.find_unused_parameters)
    if head is None:
        raw_model = getattr(wrapped, "module", wrapped)  # SyncBatchNorm conversion makes a new module
    train_model = torch.compile(wrapped) if cfg.train.compile else wrapped
    groups = param_groups(raw_model, phase, phase.optim.weight_decay)
    optimizer = comm.wrap_optimizer(objective.optimizer(groups, phase), raw_model, accumulate=cfg.train.accumulate)
    ctx = dataclasses.replace(ctx, peak_lr=scaled_lr(phase.optim.lr, ctx.global_batch, phase.schedule),
                              schedule_cfg=phase.schedule, total_steps=ctx.steps_per_epoch * max(1, phase.epochs),
                              clip_grad_norm=phase.optim.clip_grad_norm, phase_first_epoch=first_epoch,
                              frozen_bn=frozen_bn if head is None else (), features=head is not None,
                              penalty=weight_penalty(raw_model, phase.optim.l1, phase.optim.l2))
    return PhaseStep(raw_model, wrapped, train_model, optimizer, ctx)


__all__ = ["PhaseStep", "batch_sizes", "new_model", "phase_step", "step_context"]
