"""One task's state, from what Slurm says (one batched query) and what its run directory says.

Slurm knows whether a job is queued, running or ended, and where it ran; ``summary.json``
(read through ``hpcnn.results``, the one results schema) knows whether training finished
on its own terms and what it measured. ``make_status`` combines both; when a job failed,
the reason is one line: the Slurm state, exit code and the most telling line of rank 0's stderr.

Slurm has two answers that can disagree for a while: accounting (sacct, which also knows
finished jobs) lags behind the live queue (squeue) under load. ``live_states`` asks sacct,
then squeue for every job sacct calls queued or running or does not know yet, and prefers
squeue's answer; each status says where its state came from.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable

from ... import results, rundir
from ...env.hostlist import expand as expand_hostlist
from ...errors import SubmissionError, WorldError
from ..site import commands
from ..site.commands import ACTIVE, FINISHED, JobState

LIVE, ACCOUNTING = "squeue (live queue)", "sacct (accounting)"
NOWHERE = "neither squeue nor sacct"


class States(dict):
    """job id -> JobState, with ``source[job id]`` (squeue or sacct) and ``gone``: ids in neither answer
    although the queue was asked (an array task cancelled while pending leaves no accounting row)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.source: dict[str, str] = {}
        self.gone: set[str] = set()


def prefer_live(accounted: dict[str, JobState], live: dict[str, JobState], asked: Iterable[str] = (),
                expected: Iterable[str] = ()) -> States:
    """Accounting's states, replaced by the live queue's wherever the queue knows the job.

    ``asked``: base ids the queue answered for; an ``expected`` id of those that neither knows is gone.
    """
    out = States({**accounted, **live})
    out.source = {**dict.fromkeys(accounted, ACCOUNTING), **dict.fromkeys(live, LIVE)}
    asked, bases = set(asked), {k.split("_")[0] for k in out}
    for job_id in expected:
        base = job_id.split("_")[0]
        if base in asked and job_id not in out and ("_" in job_id or base not in bases):
            out.gone.add(job_id)
    return out


def _needs_queue(job_ids: list[str], accounted: dict[str, JobState]) -> list[str]:
    """The jobs (base ids) accounting does not know (all of) or calls queued/running: ask squeue about those."""
    active = {k.split("_")[0] for k, state in accounted.items() if state.state in ACTIVE}
    bases = {k.split("_")[0] for k in accounted}
    return sorted({j.split("_")[0] for j in job_ids
                   if j.split("_")[0] in active or (j not in accounted and ("_" in j or j not in bases))})


def live_states(job_ids, expected: Iterable[str] = ()) -> States:
    """One sacct query and, for the jobs that may still be in the queue, one squeue query.

    ``expected``: the task ids of the arrays asked about (``123_4``), so a task Slurm has forgotten
    entirely is reported as gone instead of waited for.
    """
    ids = [str(j) for j in job_ids if j]
    expected = [str(j) for j in expected if j]
    if not ids:
        return States()
    accounted = commands.query_states(ids)  # sacct; squeue's answer where there is no accounting
    ask = _needs_queue(ids + expected, accounted)
    try:
        live = commands.squeue(ask)
    except SubmissionError:
        live, ask = {}, []  # the queue could not be asked: accounting's answer, as it is
    return prefer_live(accounted, live, ask, ids + expected)

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
    nodelist: str = ""        # Slurm's compressed host list (sacct NodeList), "" before the job started
    label: str = ""           # how tables name the task (its overrides, or its name in a group)
    resources: dict | None = None
    source: str = ""          # where the state came from: squeue (live), sacct (accounting), summary.json

    @property
    def finished(self) -> bool:
        return (self.state in FINISHED or self.source == NOWHERE
                or (self.state not in ACTIVE and results.is_final(self.summary)))

    @property
    def succeeded(self) -> bool:
        return results.is_final(self.summary) and self.state in ("COMPLETED", "UNKNOWN")

    @property
    def nodes(self) -> list[str]:
        """The hosts the job ran on (expanded), [] while it is pending."""
        try:
            return expand_hostlist(self.nodelist) if self.nodelist else []
        except WorldError:
            return [self.nodelist]

    def metric(self, dotted: str) -> float | None:
        """Any numeric key of summary.json (``val.accuracy``, ``images_per_second``, ``gpu.energy_j``)."""
        return results.value(self.summary, dotted)

    def to_dict(self) -> dict:
        return {"job_id": self.job_id, "state": self.state, "exit_code": self.exit_code, "run_dir": str(self.run_dir),
                "index": self.index, "overrides": self.overrides, "label": self.label, "reason": self.reason,
                "summary_status": (self.summary or {}).get("status"), "nodelist": self.nodelist,
                "nodes": self.nodes, "resources": self.resources,
                "val_accuracy": self.metric("val.accuracy"), "test_accuracy": self.metric("test.accuracy"),
                "images_per_second": self.metric("images_per_second"), "wall_seconds": self.metric("wall_seconds"),
                "state_source": self.source}


def tail_lines(path: Path, n: int) -> list[str]:
    try:
        with open(path, "rb") as f:
            size = f.seek(0, 2)
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
    if state and state.exit_code not in ("0:0", ""):
        head += f" (exit {state.exit_code})"
    return f"{head}: {line}" if line else head


def _nodelist(state: JobState | None, summary: dict | None) -> str:
    """Where the job ran: Slurm's answer, else what the job recorded (squeue forgets finished jobs)."""
    nodes = state.nodes.strip() if state else ""
    if nodes and nodes != "None assigned":
        return nodes
    job = (summary or {}).get("job")
    return str(job.get("nodelist") or "") if isinstance(job, dict) else ""


def make_status(job_id: str, run_dir: Path, state: JobState | None, err_log: Path, index=None, overrides=(),
                label: str = "", resources: dict | None = None, source: str = "", gone: bool = False) -> TaskStatus:
    summary = rundir.read_summary(run_dir)
    final = results.is_final(summary)
    name = state.state if state else "UNKNOWN"
    source = source if state else (NOWHERE if gone else "")
    if state is None and final:
        name, source = "COMPLETED", results.SUMMARY_FILE
    reason = ""
    if name in FINISHED and name != "COMPLETED":
        reason = failure_reason(state, err_log)
    elif name == "COMPLETED" and not final:
        reason = "finished without a final summary" + (
            f" (training status: {summary.get('status')})" if summary else "") + "; " + failure_reason(state, err_log)
    elif state and state.state == "PENDING" and state.reason:
        reason = f"pending: {state.reason}"
    elif source == NOWHERE:
        reason = "UNKNOWN: in neither the queue nor accounting (cancelled before it started, or purged)"
    return TaskStatus(job_id, name, run_dir, state.exit_code if state else "", summary, reason, index, list(overrides),
                      _nodelist(state, summary), label, resources, source)


__all__ = ["ACCOUNTING", "LIVE", "NOWHERE", "States", "TaskStatus", "failure_reason", "live_states", "make_status",
           "prefer_live", "tail_lines"]
