"""What each worker array task runs: one payload for the whole array (data, not a closure).

A worker pulls trials until the budget is spent. Preempted (the profile's signal), its trial
stays running in the study with a checkpoint on disk; rank 0 requeues the job (bounded by
``slurm.max_requeues``, the rule ``TrainPayload`` follows) and the rerun, the same array task,
takes that trial back. Importing this module must not import torch or optuna.
"""
from __future__ import annotations

import sys
from dataclasses import dataclass
from typing import Any

from ..env import job_info
from ..errors import EXIT_PREEMPTED


@dataclass
class TunePayload:
    search_dir: str

    def __call__(self) -> dict[str, Any]:
        from ..slurm.jobs.payload import requeue_self, restart_count
        from .spec import read_record
        from .worker import work

        outcome = work(self.search_dir)
        if outcome == "preempted":
            max_requeues = read_record(self.search_dir).base.slurm.max_requeues
            rank = job_info().global_rank
            if (rank == 0 and requeue_self(max_requeues)) or (rank != 0 and restart_count() < max_requeues):
                sys.stdout.flush()
                sys.stderr.flush()
                raise SystemExit(EXIT_PREEMPTED)  # no result file: the requeued worker writes it
        return {"worker": job_info().job_id, "outcome": outcome}

    def checkpoint(self, *args: Any, **kwargs: Any):
        """submitit's timeout hook: the same worker again; it resumes its running trial."""
        from submitit.core.utils import DelayedSubmission

        return DelayedSubmission(TunePayload(self.search_dir))


__all__ = ["TunePayload"]
