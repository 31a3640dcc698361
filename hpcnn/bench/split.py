"""Where a step's time goes: one instrumented pass, separate from the timed windows.

DDP overlaps the gradient allreduce with the backward pass, so communication cannot be read
off a normal step without changing it. The instrumented pass therefore runs each step as
four contiguous, device-synchronised intervals:

    data       next(batch) from the loader
    compute    input preparation (normalise, augment, memory format) + forward + backward under
               ``no_sync`` (no communication)
    comm       the gradients averaged with explicit allreduces of the sizes of DDP's own buckets
               (the same messages DDP sends, not overlapped)
    optimizer  clip / step / zero_grad (``train.loop.optimizer_step``)

The four sum to the instrumented step's wall time by construction. The timed windows run the
unmodified step; the difference between the two totals is roughly what DDP's overlap hides.
One rank sends nothing: its ``comm`` is exactly 0 (no interval is timed).
Horovod averages inside ``optimizer.step``: there ``comm`` is null and included in ``optimizer``.
"""
from __future__ import annotations

import contextlib
import statistics

import torch
import torch.distributed as dist

from ..train.loop import chunk_loss, optimizer_step, prepare
from .timing import Stamps


def _allreduce_in_buckets(model: torch.nn.Module, bucket_bytes: list[int], world_size: int) -> None:
    """Average the gradients with one allreduce per bucket size (DDP's order: last parameters first)."""
    grads = [p.grad for p in reversed(list(model.parameters())) if p.requires_grad and p.grad is not None]
    if not grads:
        return
    flat = torch.cat([g.reshape(-1) for g in grads])
    sizes = [b // flat.element_size() for b in bucket_bytes]
    if sum(sizes) != flat.numel():  # unknown or mixed-dtype buckets: DDP's default cap (25 MiB)
        cap = 25 * 2**20 // flat.element_size()
        sizes = [min(cap, flat.numel() - i) for i in range(0, flat.numel(), cap)]
    for view in flat.split(sizes):
        dist.all_reduce(view)
    flat.div_(world_size)
    for g, averaged in zip(grads, flat.split([g.numel() for g in grads])):
        g.copy_(averaged.view_as(g))


def instrumented_steps(work, source, steps: int, bucket_bytes: list[int]) -> dict:
    """Mean seconds per step of data, compute, comm, optimizer, and the total they add up to."""
    ctx, model, optimizer = work.ctx, work.train_model, work.optimizer
    explicit = ctx.comm.backend in ("gloo", "nccl") and ctx.comm.world_size > 1
    model.train()
    for module in ctx.frozen_bn:
        module.eval()
    parts: list[list[float]] = []
    for step in range(steps):
        stamps = Stamps(ctx.device)
        stamps.mark()
        x, y = next(source)
        stamps.mark()
        x = prepare(x, ctx, 0, step)
        y = y.to(ctx.device, non_blocking=ctx.non_blocking)
        n = y.shape[0]
        chunks = max(1, min(ctx.accumulate, n))
        for xc, yc in zip(x.chunk(chunks), y.chunk(chunks)):
            with ctx.comm.no_sync(model) if explicit else contextlib.nullcontext():
                chunk_loss(model, xc, yc, n, chunks, ctx)  # the loop's own micro-batch step
        stamps.mark()
        if explicit:
            _allreduce_in_buckets(work.raw_model, bucket_bytes, ctx.comm.world_size)
            stamps.mark()
        optimizer_step(optimizer, model, ctx.comm, ctx.scaler, ctx.clip_grad_norm)
        stamps.mark()
        intervals = stamps.intervals()
        if not explicit:  # nothing sent between backward and the optimizer (one rank; Horovod sends inside it)
            intervals.insert(2, 0.0)
        parts.append(intervals)
    data, compute, comm, opt = (statistics.fmean(p[i] for p in parts) for i in range(4))
    return {"data": data, "compute": compute, "comm": comm if explicit or ctx.comm.world_size == 1 else None,
            "optimizer": opt, "split_total": statistics.fmean(sum(p) for p in parts), "split_steps": steps}
