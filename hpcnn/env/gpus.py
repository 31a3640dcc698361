"""Does a process that was given GPUs get to use them? (stdlib only: the caller passes torch's facts in.)

A CPU-only torch build, a missing CUDA module or a driver older than torch's CUDA runtime all
make ``torch.cuda.is_available()`` False, and a job with device ``auto`` would then train on the
CPU while its GPUs sit idle and are charged. When the environment says this process holds GPUs
(Slurm's GPU variables, ``CUDA_VISIBLE_DEVICES``) and torch cannot use them, the job stops at
start-up with one line naming the cause, unless the config asked for the CPU (``train.device: cpu``).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping

from ..errors import WorldError

COUNT_VARS = ("SLURM_GPUS_ON_NODE",)                                        # a number of GPUs
LIST_VARS = ("SLURM_STEP_GPUS", "SLURM_JOB_GPUS", "CUDA_VISIBLE_DEVICES")   # GPU indices or UUIDs
NO_DEVICES = {"", "-1", "none", "nodevfiles"}  # what Slurm and CUDA write for "no GPU"
OPT_OUT = "set train.device: cpu to train on the CPU on purpose"


@dataclass(frozen=True)
class TorchCuda:
    """What torch says about CUDA in this process."""

    torch_version: str
    build: str | None          # torch.version.cuda; None for a CPU-only build
    available: bool            # torch.cuda.is_available()
    device_count: int = 0
    error: str | None = None   # why CUDA did not initialise (torch.cuda.init()'s message), when known


def held_gpus(environ: Mapping[str, str]) -> str | None:
    """``VAR=value`` of the first variable saying this process was given GPUs; None when none says so."""
    for var in COUNT_VARS:
        value = environ.get(var, "").strip()
        if value.isdigit() and int(value) > 0:
            return f"{var}={value}"
    for var in LIST_VARS:
        value = environ.get(var, "").strip()
        if value.lower() not in NO_DEVICES:
            return f"{var}={value}"
    return None


def gpu_problem(cuda: TorchCuda) -> tuple[str, str] | None:
    """(cause, fix) when torch cannot use a GPU, None when it can."""
    if cuda.build is None:
        return (f"torch {cuda.torch_version} is a CPU-only build (torch.version.cuda is None)",
                "install a CUDA build of torch where the job runs (pip install torch --index-url "
                "https://download.pytorch.org/whl/cuXYZ matching the nodes' driver)")
    if not cuda.available:
        reason = " ".join((cuda.error or "torch.cuda.is_available() is False").split())  # one line
        return (f"torch {cuda.torch_version} (CUDA {cuda.build}) cannot use the GPUs: {reason}",
                "load the site's CUDA/driver module in the profile's setup lines, or install a torch whose CUDA "
                "version the nodes' driver supports (nvidia-smi shows it)")
    if cuda.device_count < 1:
        return ("no GPU is visible to torch", "check the job's GPU request and CUDA_VISIBLE_DEVICES")
    return None


def check_gpus_usable(environ: Mapping[str, str], device: str, cuda: TorchCuda) -> None:
    """Raise WorldError when this process holds GPUs that torch cannot use, unless ``device`` is cpu."""
    if device == "cpu":
        return
    held = held_gpus(environ)
    problem = gpu_problem(cuda)
    if held is None or problem is None:
        return
    cause, fix = problem
    raise WorldError(f"the job was given GPUs but {cause}", held, f"{fix}; or {OPT_OUT}")


__all__ = ["TorchCuda", "check_gpus_usable", "gpu_problem", "held_gpus"]
