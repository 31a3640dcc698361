"""One task's state, from what Slurm says (one batched query) and what its run directory says.

Slurm knows whether a job is queued, running or ended, and where it ran; ``summary.json``
(read through ``hpcnn.results``, the one results schema) knows whether training finished
on its own terms and what it measured. ``make_status`` combines both; when a job failed,
the reason is one line: the Slurm state, exit code and the most telling line of rank 0's stderr.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from ... import results
from ...env.hostlist import expand as expand_hostlist
from ...errors import WorldError
from ..site.commands import ACTIVE, FINISHED, JobState

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

    @property
    def finished(self) -> bool:
        if self.state in FINISHED:
            return True
        return self.state not in ACTIVE and results.is_final(self.summary)

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
                "images_per_second": self.metric("images_per_second"), "wall_seconds": self.metric("wall_seconds")}


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


def _nodelist(state: JobState | None, summary: dict | None) -> str:
    """Where the job ran: Slurm's answer, else what the job recorded (squeue forgets finished jobs)."""
    nodes = state.nodes.strip() if state else ""
    if nodes and nodes != "None assigned":
        return nodes
    job = (summary or {}).get("job")
    return str(job.get("nodelist") or "") if isinstance(job, dict) else ""


def make_status(job_id: str, run_dir: Path, state: JobState | None, err_log: Path, index=None, overrides=(),
                label: str = "", resources: dict | None = None) -> TaskStatus:
    summary = results.read_summary(run_dir)
    final = results.is_final(summary)
    name = state.state if state else "UNKNOWN"
    if state is None and final:
        name = "COMPLETED"
    reason = ""
    if name in FINISHED and name != "COMPLETED":
        reason = failure_reason(state, err_log)
    elif name == "COMPLETED" and not final:
        reason = "finished without a final summary" + (
            f" (training status: {summary.get('status')})" if summary else "") + "; " + failure_reason(state, err_log)
    elif state and state.state == "PENDING" and state.reason:
        reason = f"pending: {state.reason}"
    return TaskStatus(job_id, name, run_dir, state.exit_code if state else "", summary, reason, index, list(overrides),
                      _nodelist(state, summary), label, resources)


__all__ = ["TaskStatus", "failure_reason", "make_status", "tail_lines"]
