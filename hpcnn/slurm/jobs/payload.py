"""The job payload: data, not a closure (a config dict and a run directory).

submitit pickles it on the login node and calls it on every task. It trains with
``resume="auto"``, so a requeued job continues from the newest checkpoint on disk, never
from state captured at submission. After a preemption checkpoint, global rank 0 requeues
the job (bounded by ``slurm.max_requeues``) and every rank leaves with SystemExit, so
submitit writes no result and a client never reads a stale one.

Importing this module must not import torch: only ``__call__`` imports the trainer.
"""
from __future__ import annotations

import copy
import json
import logging
import sys
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from ...config import apply_overrides
from ...env import job_info
from ...errors import EXIT_PREEMPTED, SubmissionError
from ..site import commands
from . import records

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


class Resubmitted:
    """A payload whose submitit timeout hook (``checkpoint``) submits an equal copy of itself again:
    safe, since a training resumes from its newest checkpoint."""

    def checkpoint(self, *args: Any, **kwargs: Any):
        from submitit.core.utils import DelayedSubmission

        return DelayedSubmission(replace(self))


@dataclass
class TrainPayload(Resubmitted):
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


@dataclass
class SweepPayload(Resubmitted):
    """One payload for a whole sweep array: this task is ``offset +`` its array index.

    Its config (the sweep's validated base plus the task's overrides) and run directory come
    from ``sweep.json``; the task makes its run directory and ``job.json`` itself, so the
    login node writes one file per sweep, not one per task. On a timeout submitit writes the
    task's new payload beside, then renames it over the task's link to the shared pickle, so
    the other tasks' payload stays as it was.
    """

    sweep_dir: str
    offset: int = 0

    def task(self) -> tuple[dict, Path, dict, dict]:
        """(config dict, run dir, task entry, sweep record) of the task this process runs."""
        job_id = job_info().job_id or ""
        if "_" not in job_id:
            raise RuntimeError(f"a sweep task runs as a Slurm array task, but this is job {job_id or '(none)'}")
        index = self.offset + int(job_id.split("_")[1])
        record = json.loads((Path(self.sweep_dir) / "sweep.json").read_text())
        entry = record["tasks"][index]
        if entry["index"] != index:
            raise RuntimeError(f"sweep.json task {index} holds index {entry['index']}")
        config = apply_overrides(copy.deepcopy(record["base_config"]), entry["overrides"])
        return config, Path(self.sweep_dir) / entry["run_dir"], entry, record

    def __call__(self) -> dict[str, Any]:
        config, run_dir, entry, record = self.task()
        run_dir.mkdir(parents=True, exist_ok=True)
        info = job_info()
        if info.global_rank == 0:  # the task's job.json: the login node wrote only sweep.json
            unit = {key: record.get(key) for key in ("profile", "submitit_folder", "log_pattern", "submitted_at")}
            records.write_task(run_dir, info.job_id or entry["job_id"], entry["index"], entry["overrides"],
                               entry.get("label", ""), entry.get("resources") or record.get("resources"),
                               {**unit, "previous_jobs": entry.get("previous_jobs", [])})
        return TrainPayload(config, str(run_dir))()


__all__ = ["Resubmitted", "SweepPayload", "TrainPayload", "job_state", "requeue_self", "restart_count"]
