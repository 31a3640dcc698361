"""Which physical GPUs Slurm gave this step (stdlib only): what the monitor matches NVML devices to.

``CUDA_VISIBLE_DEVICES`` is renumbered inside Slurm's device cgroups; SLURM_STEP_GPUS (in an srun
step) and SLURM_JOB_GPUS (in the batch step) hold Slurm's own GPU IDs, which are not. Other nodes'
steps inherit the batch node's SLURM_JOB_GPUS, so it is trusted only where no step variable is set
and SLURMD_NODENAME says this is a compute node (the batch script itself).
"""
from __future__ import annotations

import os
from typing import Mapping


def slurm_gpu_ids(env: Mapping[str, str] | None = None) -> list[int] | None:
    """The physical GPU IDs Slurm gave this step (the batch step's, in the batch script); None outside."""
    env = os.environ if env is None else env
    value = env.get("SLURM_STEP_GPUS")
    if value is None and env.get("SLURMD_NODENAME"):
        value = env.get("SLURM_JOB_GPUS")
    try:
        ids = [int(x) for x in (value or "").split(",") if x.strip()]
    except ValueError:  # "N/A" and the like
        return None
    return ids or None


__all__ = ["slurm_gpu_ids"]
