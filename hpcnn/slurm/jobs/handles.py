"""Handles on submitted work that survive the login process: rebuilt from job.json / sweep.json.

``JobHandle`` is one job (or one array task); ``JobArray`` is a sweep or a mixed-resource
group: one or more Slurm arrays, one run directory per task. Status comes from one batched Slurm
query (``status.live_states``: sacct, and squeue for what may still be queued) plus each run
directory (``status.make_status``); waits poll sparingly, with a growing interval and a deadline.
"""
from __future__ import annotations

import functools
import re
import time
from collections import Counter
from pathlib import Path
from typing import Iterator

from ...errors import HpcnnError, SubmissionError
from ..site import commands
from ..site.commands import JobState
from . import records
from .results import rank_rows
from .status import ACCOUNTING, TaskStatus, live_states, make_status, tail_lines


class JobHandle:
    """One job or array task, attached from its run directory and id (no live process needed)."""

    def __init__(self, job_id: str, run_dir: str | Path, record: dict | None = None):
        self.job_id = str(job_id)
        self.run_dir = Path(run_dir)
        self.record = record or {}

    def __repr__(self) -> str:
        return f"JobHandle(job_id={self.job_id!r}, run_dir={str(self.run_dir)!r})"

    @classmethod
    def from_run_dir(cls, run_dir: str | Path) -> "JobHandle":
        run_dir = Path(run_dir)
        if (run_dir / records.JOB_FILE).is_file():
            record = records.read_json(run_dir / records.JOB_FILE)
            return cls(record["job_id"], run_dir, record)
        marker = run_dir / "slurm_job_id"  # written by scripts from `hpcnn render`
        if marker.is_file():
            return cls(marker.read_text().strip(), run_dir,
                       {"log_pattern": str(run_dir / "logs" / "{job_id}_{rank}.{stream}")})
        raise HpcnnError("not a submitted run directory (no job.json)", str(run_dir),
                         "pass the directory printed by `hpcnn submit`, or a job id")

    @classmethod
    def from_id(cls, job_id: str, run_dir: str | Path | None = None) -> "JobHandle":
        if run_dir is not None:
            return cls.from_run_dir(run_dir)
        found = locate(job_id)
        return found.task_by_id(job_id) if isinstance(found, JobArray) else found

    def log_path(self, rank: int = 0, stream: str = "out") -> Path:
        pattern = self.record.get("log_pattern") or str(self.run_dir / "submitit" / "{job_id}_{rank}_log.{stream}")
        return Path(pattern.format(job_id=self.job_id, rank=rank, stream=stream))

    def logs(self, rank: int = 0, tail: int = 40, stream: str = "out") -> str:
        return "\n".join(tail_lines(self.log_path(rank, stream), tail))  # "" while there is no log

    def status(self, states: dict[str, JobState] | None = None) -> TaskStatus:
        if states is None:
            states = live_states([self.job_id], [self.job_id])
        return make_status(self.job_id, self.run_dir, states.get(self.job_id), self.log_path(0, "err"),
                           self.record.get("sweep_index"), self.record.get("overrides", []),
                           self.record.get("label", ""), self.record.get("resources"),
                           getattr(states, "source", {}).get(self.job_id, ACCOUNTING),
                           self.job_id in getattr(states, "gone", ()))

    def wait(self, timeout_s: float = 3600, poll_s: float = 2.0, poll_max_s: float = 30.0) -> TaskStatus:
        """Until the job has finished (one Slurm query per poll; the interval grows to poll_max_s)."""
        return wait_for(lambda states: [self.status(states)], [self.job_id], timeout_s, poll_s, poll_max_s,
                        [self.job_id])[0]

    def result(self, timeout_s: float = 3600, poll_max_s: float = 30.0) -> dict:
        """The run's summary once it has finished; a failure raises with its reason."""
        status = self.wait(timeout_s, poll_max_s=poll_max_s)
        if not status.succeeded:
            raise SubmissionError(f"job {self.job_id} did not complete: {status.reason or status.state}",
                                  hint=f"see `hpcnn logs {self.job_id} --stream err`")
        return status.summary or {}

    def cancel(self) -> None:
        commands.scancel([self.job_id])


def wait_for(collect, job_ids: list[str], timeout_s: float, poll_s: float, poll_max_s: float = 30.0,
             expected: list[str] | None = None):
    """Poll ``collect(states)`` until every status is finished; one Slurm query per round, growing interval.

    ``expected``: an array's task ids, so a task Slurm no longer knows at all ends the wait."""
    deadline = time.monotonic() + timeout_s
    delay = poll_s
    while True:
        statuses = collect(live_states(job_ids, expected or ()))
        if all(s.finished for s in statuses):
            return statuses
        if time.monotonic() + delay > deadline:
            waiting = [s.job_id for s in statuses if not s.finished]
            raise SubmissionError(f"timed out after {timeout_s:g} s waiting for {len(waiting)} job(s): "
                                  f"{', '.join(waiting[:5])}", hint="the jobs keep running; check `hpcnn status`")
        time.sleep(delay)
        delay = min(delay * 1.5, poll_max_s)


class JobArray:
    """A sweep or a mixed-resource group: one or more Slurm arrays, one run directory per task.

    ``kind`` is "sweep" (one request for every task) or "group" (one array per distinct request);
    both are read from ``sweep.json``, and each task keeps its own request and job id.
    """

    def __init__(self, sweep_dir: str | Path, record: dict):
        self.sweep_dir = Path(sweep_dir)
        self.record = record

    @functools.cached_property
    def tasks(self) -> list[JobHandle]:
        """One handle per task (its latest job), built on first use: a 10,000-task sweep's submit needs none."""
        record = self.record
        folder = record.get("submitit_folder", str(self.sweep_dir / "submitit"))
        pattern = record.get("log_pattern") or str(Path(folder) / "{job_id}_{rank}_log.{stream}")
        shared = record.get("resources")  # a sweep's one request (its tasks do not repeat it)
        return [JobHandle(t["job_id"], self.sweep_dir / t["run_dir"],
                          {"log_pattern": pattern, "sweep_index": t["index"], "overrides": t["overrides"],
                           "label": t.get("label", ""), "resources": t.get("resources") or shared,
                           "previous_jobs": t.get("previous_jobs", [])})
                for t in record["tasks"]]

    @property
    def kind(self) -> str:
        return self.record.get("kind", "sweep")

    @classmethod
    def from_dir(cls, sweep_dir: str | Path) -> "JobArray":
        return cls(sweep_dir, records.read_json(Path(sweep_dir) / records.SWEEP_FILE))

    def __repr__(self) -> str:
        return f"JobArray(arrays={self.array_ids}, tasks={len(self)}, sweep_dir={str(self.sweep_dir)!r})"

    def __len__(self) -> int:
        return len(self.record["tasks"])

    def __getitem__(self, index: int) -> JobHandle:
        return self.tasks[index]

    def __iter__(self) -> Iterator[JobHandle]:
        return iter(self.tasks)

    @property
    def array_ids(self) -> list[str]:
        return [a["job_id"] for a in self.record["arrays"]]

    def task_by_id(self, job_id: str) -> JobHandle:
        for task in self.tasks:
            if task.job_id == str(job_id):
                return task
        raise HpcnnError(f"job {job_id} is not a task of this {self.kind}", str(self.sweep_dir))

    def statuses(self, states: dict[str, JobState] | None = None) -> list[TaskStatus]:
        if states is None:
            states = live_states(self.array_ids, [t.job_id for t in self.tasks])  # one query for the whole sweep
        return [t.status(states) for t in self.tasks]

    def status(self) -> dict[str, int]:
        return dict(Counter(s.state for s in self.statuses()))

    def wait(self, timeout_s: float = 3600, poll_s: float = 2.0, poll_max_s: float = 30.0) -> list[TaskStatus]:
        return wait_for(self.statuses, self.array_ids, timeout_s, poll_s, poll_max_s, [t.job_id for t in self.tasks])

    def results(self, statuses: list[TaskStatus] | None = None, metric: str | None = None,
                mode: str | None = None) -> list[dict]:
        """One row per task, best first by ``metric`` (any numeric key of summary.json; default the record's)."""
        return rank_rows(statuses or self.statuses(), metric or self.record.get("metric", "val.accuracy"),
                         mode or self.record.get("mode", "max"))

    def cancel(self) -> None:
        commands.scancel(self.array_ids)


def locate(ref: str | Path) -> JobHandle | JobArray:
    """A run dir, a sweep dir, a job id, an array id or an array task id (``123_4``) -> its handle."""
    path = Path(ref)
    if path.is_dir():
        return JobArray.from_dir(path) if (path / records.SWEEP_FILE).is_file() else JobHandle.from_run_dir(path)
    text = str(ref).strip()
    if not re.fullmatch(r"\d+(_\d+)?", text):
        raise HpcnnError(f"no such run directory or job id: {text}", None,
                         "pass a directory printed by `hpcnn submit`/`hpcnn sweep`, or a numeric job id")
    directory = records.lookup(text) or records.lookup(text.split("_")[0])
    if directory is None:
        raise HpcnnError(f"job {text} was not submitted by hpcnn from this account (no record)",
                         str(records.state_dir() / "jobs"), "pass its run directory instead")
    if (directory / records.SWEEP_FILE).is_file():
        sweep = JobArray.from_dir(directory)
        return sweep.task_by_id(text) if "_" in text else sweep
    return JobHandle.from_run_dir(directory)


__all__ = ["JobArray", "JobHandle", "locate", "wait_for"]
