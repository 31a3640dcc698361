"""Pick the Comm for a World and ``dist.backend``: the one module that knows every implementation."""
from __future__ import annotations

import torch

from .comm import Comm, SingleComm


def make_comm(world, backend: str, device: torch.device, timeout_s: float) -> Comm:
    """Pick the implementation for this world and config (``dist.backend``)."""
    if backend == "horovod":
        from .horovod import HorovodComm

        return HorovodComm(world, device)
    # A process group even for world size 1 under a launcher (e.g. torchrun with one GPU), so the
    # NCCL/gloo path is the one a single-GPU Slurm job exercises too.
    if not world.is_distributed and world.launcher == "single":
        return SingleComm()
    from .torch_comm import TorchComm

    if backend == "auto":
        backend = "nccl" if device.type == "cuda" else "gloo"
    return TorchComm(world, backend, device, timeout_s)
