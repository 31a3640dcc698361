"""Learning rate as a pure function of the optimizer step.

No scheduler object means no scheduler state to save: resuming at step k gives lr(k).
"""
from __future__ import annotations

import math


def lr_at(step: int, total_steps: int, steps_per_epoch: int, peak_lr: float, sched) -> float:
    warmup = int(round(sched.warmup_epochs * steps_per_epoch))
    if sched.name == "onecycle":  # 30% ramp up then cosine down, as in Smith's one-cycle policy
        warmup = max(1, int(0.3 * total_steps))
    if warmup and step < warmup:
        f0 = sched.warmup_start_factor
        return peak_lr * (f0 + (1 - f0) * step / warmup)
    if sched.name == "constant":
        return peak_lr
    if sched.name == "step":
        return peak_lr * sched.gamma ** (step // max(1, sched.step_epochs * steps_per_epoch))
    # cosine and onecycle decay to min_lr_factor * peak
    t = min(1.0, (step - warmup) / max(1, total_steps - warmup))
    floor = sched.min_lr_factor
    return peak_lr * (floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * t)))


def scaled_lr(base_lr: float, global_batch: int, sched) -> float:
    """Goyal et al. 2017 linear scaling rule: lr grows with the global batch."""
    if sched.scale_lr == "linear":
        return base_lr * global_batch / sched.reference_batch
    return base_lr
