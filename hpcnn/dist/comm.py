"""The few collective operations the trainer needs, for one process, DDP or Horovod.

The trainer calls these at epoch ends and at log boundaries only, never per step, so
the hot loop stays free of host synchronisation.
"""
from __future__ import annotations

import contextlib

import torch
from torch import nn


class Comm:
    """Interface; SingleComm is the one-process implementation."""

    rank = 0
    world_size = 1
    local_rank = 0
    backend = "none"

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def wrap_model(self, model: nn.Module, device: torch.device, sync_batchnorm: bool,
                   find_unused_parameters: bool) -> nn.Module:
        return model

    def wrap_optimizer(self, optimizer, model: nn.Module, accumulate: int = 1):
        return optimizer

    def synchronized_step(self, optimizer):
        """Context for clip/unscale + step: gradients are final inside it (Horovod averages them here)."""
        return contextlib.nullcontext()

    def no_sync(self, model: nn.Module):
        return contextlib.nullcontext()

    def any(self, flag: bool) -> bool:
        return bool(flag)

    def mean(self, value: float) -> float:
        return float(value)

    def all_gather_object(self, obj) -> list:
        return [obj]

    def broadcast_object(self, obj):
        return obj

    def barrier(self) -> None:
        pass

    def shutdown(self) -> None:
        pass


class SingleComm(Comm):
    pass
