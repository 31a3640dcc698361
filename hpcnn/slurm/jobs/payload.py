"""The job payload: data, not a closure (a config dict and a run directory).

submitit pickles it on the login node and calls it on every task. It trains with
``resume="auto"``, so a requeued job continues from the newest checkpoint on disk, never
from state captured at submission. After a preemption checkpoint, global rank 0 requeues
the job (bounded by ``slurm.max_requeues``) and every rank leaves with SystemExit, so
submitit writes no result and a client never reads a stale one.

Importing this module must not import torch: only ``__call__`` imports the trainer.
"""
from __future__ import annotations

import logging
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ...env import job_info
from ...errors import EXIT_PREEMPTED, SubmissionError
from ..site import commands

log = logging.getLogger("hpcnn.slurm")


def restart_count() -> int:
    """How many times Slurm has restarted this job (0 on the first run)."""
    return job_info().restart_count


def job_state(job_id: str) -> str | None:
    """This job's state as slurmctld sees it now (RUNNING, CANCELLED, ...), or None if unknown."""
    try:
        return commands.show_job(job_id, timeout=30).get("JobState")
    except SubmissionError as err:
        log.warning("could not ask Slurm for the state of job %s: %s", job_id, err)
        return None


def requeue_self(max_requeues: int) -> bool:
    """Rank 0 asks Slurm to requeue this job if requeues are left; True if it did (best effort).

    Only a job that is still RUNNING requeues itself: `scancel` also stops the trainer (SIGTERM
    checkpoints like a preemption), and a cancelled job must stay cancelled; a job Slurm is
    already requeueing (PreemptMode=REQUEUE) needs no second requeue. A failing scontrol is
    logged in one line, never raised: the checkpoint is on disk and a resubmission continues it.
    """
    info = job_info()
    job_id, restarts = info.raw_job_id, info.restart_count
    if not job_id:
        log.warning("preempted outside Slurm: nothing to requeue")
        return False
    if restarts >= max_requeues:
        log.warning("preempted, but slurm.max_requeues=%d is used up (restart count %d): not requeueing; "
                    "resubmit to continue from the checkpoint", max_requeues, restarts)
        return False
    state = job_state(job_id)
    if state != "RUNNING":
        log.warning("checkpoint written; job %s is %s, so it is not requeued", job_id, state or "in an unknown state")
        return False
    try:
        commands.requeue(job_id)
    except SubmissionError as err:
        log.error("checkpoint written, but requeueing job %s failed: %s", job_id, err)
        return False
    log.warning("checkpoint written; requeued job %s (restart %d of %d)", job_id, restarts + 1, max_requeues)
    return True


@dataclass
class TrainPayload:
    """What a Slurm task runs: ``run_job(config, run_dir, resume="auto")`` plus the requeue rule."""

    config: dict
    run_dir: str

    def __call__(self) -> dict[str, Any]:
        from hpcnn.run import run_from_dict  # lazily: the login node may not have torch

        Path(self.run_dir).mkdir(parents=True, exist_ok=True)
        result = run_from_dict(self.config, self.run_dir, resume="auto")
        if result.status != "preempted":
            return result.summary
        max_requeues = int((self.config.get("slurm") or {}).get("max_requeues", 3))
        rank = job_info().global_rank
        requeued = rank == 0 and requeue_self(max_requeues)
        if requeued or (rank != 0 and restart_count() < max_requeues):
            sys.stdout.flush()
            sys.stderr.flush()
            # Like submitit's own requeue: leave without a result file, the rerun will write it.
            raise SystemExit(EXIT_PREEMPTED)
        return result.summary  # out of requeues: report the preempted summary as the result

    def checkpoint(self, *args: Any, **kwargs: Any):
        """submitit's timeout hook: resubmit the same payload; it resumes from the newest checkpoint."""
        from submitit.core.utils import DelayedSubmission

        return DelayedSubmission(TrainPayload(self.config, self.run_dir))


__all__ = ["TrainPayload", "job_state", "requeue_self", "restart_count"]
