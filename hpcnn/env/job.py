"""The scheduler job this process runs in, as plain data.

`World` says who a rank is; `JobInfo` says which Slurm job it belongs to: the id users
type (``123`` or ``123_4`` for an array task), the nodes, how often Slurm restarted it.
The Slurm payload (requeue rule) and the results schema (summary.json) read it here, so
launcher variables stay in one package; the job id is read as detect_world() reads it.
"""
from __future__ import annotations

import os
from dataclasses import asdict, dataclass
from typing import Mapping

from .detect import _Reader, _slurm_job_id

_RANK_VARS = ("SLURM_PROCID", "SUBMITIT_LOCAL_GLOBALID", "RANK", "OMPI_COMM_WORLD_RANK", "PMI_RANK",
              "HOROVOD_RANK")


@dataclass(frozen=True)
class JobInfo:
    job_id: str | None = None          # "123", or "123_4" for task 4 of array 123
    raw_job_id: str | None = None      # SLURM_JOB_ID: each array task has its own
    nodelist: str | None = None        # compressed Slurm hostlist, e.g. "n[1-2]"
    num_nodes: int | None = None
    partition: str | None = None
    restart_count: int = 0             # how often Slurm requeued this job (0 on the first run)
    global_rank: int = 0

    def to_dict(self) -> dict:
        return asdict(self)


def _int(value: str | None, default: int | None) -> int | None:
    try:
        return int(value) if value not in (None, "") else default
    except ValueError:
        return default


def job_info(environ: Mapping[str, str] | None = None) -> JobInfo:
    env = os.environ if environ is None else environ
    r = _Reader(env, "Slurm")
    rank = next((int(env[v]) for v in _RANK_VARS if env.get(v, "").isdigit()), 0)
    return JobInfo(job_id=_slurm_job_id(r), raw_job_id=r.text("SLURM_JOB_ID", "SLURM_JOBID"),
                   nodelist=r.text("SLURM_JOB_NODELIST", "SLURM_NODELIST"),
                   num_nodes=_int(r.text("SLURM_JOB_NUM_NODES", "SLURM_NNODES"), None),
                   partition=r.text("SLURM_JOB_PARTITION"),
                   restart_count=_int(r.text("SLURM_RESTART_COUNT"), 0) or 0, global_rank=rank)


__all__ = ["JobInfo", "job_info"]
