"""Handles on submitted work that survive the login process: rebuilt from job.json / sweep.json.

``JobHandle`` is one job (or one array task); ``JobArray`` is a sweep. Status comes from one
batched Slurm query (``commands.query_states``) plus what the run directory says
(``summary.json``); waits poll sparingly with a growing interval and always have a deadline.
"""
from __future__ import annotations

import json
import re
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

from ..errors import HpcnnError, SubmissionError
from . import commands, records
from .commands import ACTIVE, FINISHED, JobState

FINAL_SUMMARY = {"completed", "early_stopped"}
_EXCEPTION_LINE = re.compile(r"^(?:\[rank\d+\]:\s*)?([\w.]*(?:Error|Exception|Interrupt|Exit)\b.*)$")
_SLURM_LINE = re.compile(r"(CANCELLED|DUE TO TIME LIMIT|PREEMPTION|oom-kill|Killed|NODE FAIL)")
_ERROR_LINE = re.compile(r"(error|Error|ERROR)")


@dataclass
class TaskStatus:
    job_id: str
    state: str
    run_dir: Path
    exit_code: str = ""
    summary: dict | None = None
    reason: str = ""
    index: int | None = None
    overrides: list = field(default_factory=list)

    @property
    def finished(self) -> bool:
        if self.state in FINISHED:
            return True
        return self.state not in ACTIVE and bool(self.summary) and self.summary.get("status") in FINAL_SUMMARY

    @property
    def succeeded(self) -> bool:
        return bool(self.summary) and self.summary.get("status") in FINAL_SUMMARY and self.state in (
            "COMPLETED", "UNKNOWN")

    def metric(self, dotted: str) -> float | None:
        node: Any = (self.summary or {}).get("metrics", {})
        for part in dotted.split("."):
            if not isinstance(node, dict) or part not in node:
                return None
            node = node[part]
        return node if isinstance(node, (int, float)) else None

    def to_dict(self) -> dict:
        return {"job_id": self.job_id, "state": self.state, "exit_code": self.exit_code, "run_dir": str(self.run_dir),
                "index": self.index, "overrides": self.overrides, "reason": self.reason,
                "summary_status": (self.summary or {}).get("status"),
                "val_accuracy": self.metric("val.accuracy"), "test_accuracy": self.metric("test.accuracy"),
                "wall_seconds": (self.summary or {}).get("wall_seconds")}


def read_summary(run_dir: Path) -> dict | None:
    try:
        return json.loads((Path(run_dir) / "summary.json").read_text())
    except (OSError, ValueError):
        return None


def tail_lines(path: Path, n: int) -> list[str]:
    try:
        with open(path, "rb") as f:
            f.seek(0, 2)
            size = f.tell()
            f.seek(max(0, size - 256 * 1024))
            data = f.read().decode(errors="replace")
    except OSError:
        return []
    return data.splitlines()[-n:] if n > 0 else data.splitlines()


def failure_reason(state: JobState | None, err_log: Path) -> str:
    """One line: the Slurm state and exit code plus the most telling line of rank 0's stderr."""
    lines = [ln.strip() for ln in tail_lines(err_log, 80) if ln.strip()]
    exceptions = [m.group(1) for m in map(_EXCEPTION_LINE.match, lines) if m]
    slurm = [ln for ln in lines if _SLURM_LINE.search(ln)]
    errors = [ln for ln in lines if _ERROR_LINE.search(ln)]
    line = (exceptions or slurm or errors or lines or [""])[-1]
    head = state.state if state else "FAILED"
    if state and state.exit_code and state.exit_code not in ("0:0", ""):
        head += f" (exit {state.exit_code})"
    return f"{head}: {line}" if line else head


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
            job_id = marker.read_text().strip()
            return cls(job_id, run_dir, {"log_pattern": str(run_dir / "logs" / "{job_id}_{rank}.{stream}")})
        raise HpcnnError("not a submitted run directory (no job.json)", str(run_dir),
                         "pass the directory printed by `hpcnn submit`, or a job id")

    @classmethod
    def from_id(cls, job_id: str, run_dir: str | Path | None = None) -> "JobHandle":
        if run_dir is not None:
            return cls.from_run_dir(run_dir)
        found = locate(job_id)
        if isinstance(found, JobArray):
            return found.task_by_id(job_id)
        return found

    def log_path(self, rank: int = 0, stream: str = "out") -> Path:
        pattern = self.record.get("log_pattern") or str(self.run_dir / "submitit" / "{job_id}_{rank}_log.{stream}")
        return Path(pattern.format(job_id=self.job_id, rank=rank, stream=stream))

    def logs(self, rank: int = 0, tail: int = 40, stream: str = "out") -> str:
        path = self.log_path(rank, stream)
        if not path.exists():
            return ""
        return "\n".join(tail_lines(path, tail))

    def status(self, states: dict[str, JobState] | None = None) -> TaskStatus:
        if states is None:
            states = commands.query_states([self.job_id])
        return make_status(self.job_id, self.run_dir, states.get(self.job_id), self.log_path(0, "err"),
                           self.record.get("sweep_index"), self.record.get("overrides", []))

    def wait(self, timeout_s: float = 3600, poll_s: float = 2.0, poll_max_s: float = 30.0) -> TaskStatus:
        """Until the job has finished (one Slurm query per poll; the interval grows to poll_max_s)."""
        return wait_for(lambda states: [self.status(states)], [self.job_id], timeout_s, poll_s, poll_max_s)[0]

    def result(self, timeout_s: float = 3600, poll_max_s: float = 30.0) -> dict:
        """The run's summary once it has finished; a failure raises with its reason."""
        status = self.wait(timeout_s, poll_max_s=poll_max_s)
        if not status.succeeded:
            raise SubmissionError(f"job {self.job_id} did not complete: {status.reason or status.state}",
                                  hint=f"see `hpcnn logs {self.job_id} --stream err`")
        return status.summary or {}

    def cancel(self) -> None:
        commands.scancel([self.job_id])


def make_status(job_id: str, run_dir: Path, state: JobState | None, err_log: Path, index=None,
                overrides=()) -> TaskStatus:
    summary = read_summary(run_dir)
    name = state.state if state else "UNKNOWN"
    if state is None and summary and summary.get("status") in FINAL_SUMMARY:
        name = "COMPLETED"
    reason = ""
    if name in FINISHED and name != "COMPLETED":
        reason = failure_reason(state, err_log)
    elif name == "COMPLETED" and not (summary and summary.get("status") in FINAL_SUMMARY):
        reason = "finished without a final summary" + (
            f" (training status: {summary.get('status')})" if summary else "") + "; " + failure_reason(state, err_log)
    elif state and state.state == "PENDING" and state.reason:
        reason = f"pending: {state.reason}"
    return TaskStatus(job_id, name, run_dir, state.exit_code if state else "", summary, reason, index, list(overrides))


def wait_for(collect, job_ids: list[str], timeout_s: float, poll_s: float, poll_max_s: float = 30.0):
    """Poll ``collect(states)`` until every status is finished; one Slurm query per round, growing interval."""
    deadline = time.monotonic() + timeout_s
    delay = poll_s
    while True:
        statuses = collect(commands.query_states(job_ids))
        if all(s.finished for s in statuses):
            return statuses
        if time.monotonic() + delay > deadline:
            waiting = [s.job_id for s in statuses if not s.finished]
            raise SubmissionError(f"timed out after {timeout_s:g} s waiting for {len(waiting)} job(s): "
                                  f"{', '.join(waiting[:5])}", hint="the jobs keep running; check `hpcnn status`")
        time.sleep(delay)
        delay = min(delay * 1.5, poll_max_s)


class JobArray:
    """A sweep: one or more Slurm arrays, one run directory per task."""

    def __init__(self, sweep_dir: str | Path, record: dict):
        self.sweep_dir = Path(sweep_dir)
        self.record = record
        folder = record.get("submitit_folder", str(self.sweep_dir / "submitit"))
        pattern = record.get("log_pattern") or str(Path(folder) / "{job_id}_{rank}_log.{stream}")
        self.tasks = [JobHandle(t["job_id"], self.sweep_dir / t["run_dir"],
                                {"log_pattern": pattern, "sweep_index": t["index"], "overrides": t["overrides"]})
                      for t in record["tasks"]]

    @classmethod
    def from_dir(cls, sweep_dir: str | Path) -> "JobArray":
        return cls(sweep_dir, records.read_json(Path(sweep_dir) / records.SWEEP_FILE))

    def __repr__(self) -> str:
        return f"JobArray(arrays={self.array_ids}, tasks={len(self)}, sweep_dir={str(self.sweep_dir)!r})"

    def __len__(self) -> int:
        return len(self.tasks)

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
        raise HpcnnError(f"job {job_id} is not a task of this sweep", str(self.sweep_dir))

    def statuses(self, states: dict[str, JobState] | None = None) -> list[TaskStatus]:
        if states is None:
            states = commands.query_states(self.array_ids)  # one query for the whole sweep
        return [t.status(states) for t in self.tasks]

    def status(self) -> dict[str, int]:
        return dict(Counter(s.state for s in self.statuses()))

    def wait(self, timeout_s: float = 3600, poll_s: float = 2.0, poll_max_s: float = 30.0) -> list[TaskStatus]:
        return wait_for(self.statuses, self.array_ids, timeout_s, poll_s, poll_max_s)

    def results(self, statuses: list[TaskStatus] | None = None) -> list[dict]:
        from .results import rank_rows

        return rank_rows(statuses or self.statuses(), self.record.get("metric", "val.accuracy"),
                         self.record.get("mode", "max"))

    def cancel(self) -> None:
        commands.scancel(self.array_ids)


def locate(ref: str | Path) -> JobHandle | JobArray:
    """A run dir, a sweep dir, a job id, an array id or an array task id (``123_4``) -> its handle."""
    path = Path(ref)
    if path.is_dir():
        if (path / records.SWEEP_FILE).is_file():
            return JobArray.from_dir(path)
        return JobHandle.from_run_dir(path)
    text = str(ref).strip()
    if not re.fullmatch(r"\d+(_\d+)?", text):
        raise HpcnnError(f"no such run directory or job id: {text}", None,
                         "pass a directory printed by `hpcnn submit`/`hpcnn sweep`, or a numeric job id")
    base = text.split("_")[0]
    directory = records.lookup(text) or records.lookup(base)
    if directory is None:
        raise HpcnnError(f"job {text} was not submitted by hpcnn from this account (no record)",
                         str(records.state_dir() / "jobs"), "pass its run directory instead")
    if (directory / records.SWEEP_FILE).is_file():
        sweep = JobArray.from_dir(directory)
        return sweep.task_by_id(text) if "_" in text else sweep
    return JobHandle.from_run_dir(directory)


__all__ = ["JobArray", "JobHandle", "TaskStatus", "failure_reason", "locate", "make_status", "read_summary",
           "wait_for"]
