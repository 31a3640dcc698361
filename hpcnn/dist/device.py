"""Which device a process computes on: the one choice training, ``hpcnn bench`` and ``hpcnn predict`` share."""
from __future__ import annotations

import os

import torch

from ..env import TorchCuda, check_gpus_usable, detect_world
from ..errors import ConfigError


def torch_cuda() -> TorchCuda:
    """torch's CUDA facts for env.check_gpus_usable; the reason CUDA failed comes from torch.cuda.init()."""
    available = torch.cuda.is_available()
    error = None
    if torch.version.cuda and not available:
        try:
            torch.cuda.init()
        except Exception as err:  # torch's own words: no driver, driver too old, ...
            error = str(err)
    return TorchCuda(torch.__version__, torch.version.cuda, available,
                     torch.cuda.device_count() if available else 0, error)


def choose_device(want: str | torch.device = "auto", local_rank: int | None = None,
                  strict: bool = False) -> torch.device:
    """``auto``: this process's GPU (local rank modulo the GPUs visible; by default the World's) or the CPU.

    ``strict`` is a job's ``train.device`` (auto | cpu | cuda): GPUs the job holds but torch cannot use
    stop it rather than train on the CPU, ``cuda`` without a GPU is an error, and the GPU chosen becomes the
    current device. Otherwise any device other than ``auto`` is taken as given (``cuda:1``, ``cpu``).
    """
    want = str(want)
    if not strict and want != "auto":
        return torch.device(want)
    if strict and want != "cpu":
        check_gpus_usable(os.environ, want, torch_cuda())
    has_cuda = torch.cuda.is_available()
    if want == "cuda" and not has_cuda:
        raise ConfigError("train.device is cuda but no GPU is visible", "train.device",
                          "request GPUs from Slurm (slurm.gpus_per_node) or use device: auto")
    if want == "cpu" or not has_cuda:
        return torch.device("cpu")
    if local_rank is None:
        local_rank = detect_world().local_rank
    device = torch.device("cuda", local_rank % torch.cuda.device_count())
    if strict:
        torch.cuda.set_device(device)
    return device


__all__ = ["choose_device", "torch_cuda"]
