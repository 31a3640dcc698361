"""Explicit L1/L2 weight penalties (``optim.l1``, ``optim.l2``), added to the training loss in one place.

``penalty = l1 * sum|w| + l2 * sum w**2`` over the trainable weight tensors (two or more
dimensions: conv kernels and dense matrices; biases and normalisation parameters are left
alone, as weight decay leaves them). This is Keras' ``kernel_regularizer`` convention.

Why besides ``optim.weight_decay``: for sgd, adam and rmsprop torch's weight decay adds
``wd * w`` to the gradient, which is exactly an L2 penalty with ``l2 = wd / 2``; for adamw (the
default optimizer) it is *decoupled*: each weight shrinks by ``lr * wd`` outside the adaptive
update, while a penalty's gradient is divided by Adam's denominator like any other gradient
(Loshchilov & Hutter, 2019). ``optim.l2`` gives the classic coupled L2 with any optimizer, and
L1 has no optimizer-side equivalent at all: it drives weights to exactly zero.
``weight_penalty`` returns ``None`` when both are 0, so the loop does no extra work.
"""
from __future__ import annotations

from typing import Callable

import torch
from torch import nn


def penalised(model: nn.Module) -> list[torch.Tensor]:
    """The tensors a penalty applies to: trainable, with two or more dimensions."""
    return [p for p in model.parameters() if p.requires_grad and p.ndim >= 2]


def weight_penalty(model: nn.Module, l1: float = 0.0, l2: float = 0.0) -> Callable[[], torch.Tensor] | None:
    """A function returning the penalty of ``model``'s current weights (a scalar with a graph), or None if off.

    Build it after the phase set ``requires_grad`` (frozen weights are not penalised).
    """
    params = penalised(model)
    if not (l1 or l2) or not params:
        return None

    def penalty() -> torch.Tensor:
        total = params[0].new_zeros(())
        for p in params:
            if l1:
                total = total + l1 * p.abs().sum()
            if l2:
                total = total + l2 * p.square().sum()
        return total

    return penalty


__all__ = ["penalised", "weight_penalty"]
