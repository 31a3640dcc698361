"""``hpcnn sweep SWEEP_DIR``: submit again only the tasks of a sweep that failed, were cancelled or never ran.

A task is resubmitted when its latest job has left the queue without a final summary
(FAILED, CANCELLED, TIMEOUT, ... or unknown to Slurm); finished and still queued or running
tasks are left alone, so repeating the command never submits a task twice. The tasks go out
as one array holding only their indices (``--array=3,7,12``), one per MaxArraySize chunk of
the original sweep, with the sweep's shared payload: each task keeps its run directory (and
resumes from its newest checkpoint, if it wrote one). ``sweep.json`` keeps every task's
earlier job ids (``previous_jobs``) and its latest one, which ``status`` and ``results`` show.
Same pattern as ``hpcnn scale`` and ``hpcnn predict --resubmit``: look, submit what is missing,
record; a lock keeps two resubmissions from racing.
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from ...config import from_dict
from ...errors import HpcnnError
from ...files import exclusive
from ..site.commands import ACTIVE
from ..site.preflight import preflight
from ..site.profiles import load_profile
from ..site.rendering import render_submitit
from ..site.resources import resolve
from . import executor, records
from .arrays import ArrayPlan, ArraySpec, ArrayTask, record_submission, submit_shared
from .handles import JobArray
from .status import NOWHERE, TaskStatus


@dataclass
class Resubmission:
    """What ``resubmit_sweep`` did (or, for a dry run, would do)."""

    sweep: JobArray
    tasks: list[int] = field(default_factory=list)       # task indices submitted again
    array_ids: list[str] = field(default_factory=list)
    skipped: dict[str, int] = field(default_factory=dict)  # state -> count of tasks left alone
    plan: ArrayPlan | None = None


def needs_rerun(status: TaskStatus) -> bool:
    """Out of the queue without a final summary: failed, cancelled, timed out, or never known to Slurm."""
    return status.state not in ACTIVE and not status.succeeded


def read_sweep(sweep_dir) -> JobArray:
    directory = Path(sweep_dir)
    if not (directory / records.SWEEP_FILE).is_file():
        raise HpcnnError(f"not a sweep directory (no {records.SWEEP_FILE})", str(directory),
                         "pass the directory `hpcnn sweep SWEEP.yaml` printed")
    sweep = JobArray.from_dir(directory)
    if sweep.kind != "sweep":
        other = {"predict": "hpcnn predict --resubmit DIR", "group": "submit the group again from Python"}
        raise HpcnnError(f"this is a {sweep.kind} directory, not a sweep", str(directory),
                         f"use `{other.get(sweep.kind, 'hpcnn scale STUDY.yaml')}`")
    if "base_config" not in sweep.record:
        raise HpcnnError("this sweep was submitted by an older hpcnn and cannot be resubmitted task by task",
                         str(directory), "submit the sweep file again")
    return sweep


def _plan(sweep: JobArray, todo: list[int], python=None) -> ArrayPlan:
    """One array per original chunk with tasks to rerun; array index = task index - chunk offset."""
    record = sweep.record
    base = from_dict(record["base_config"], f"{sweep.sweep_dir / records.SWEEP_FILE} (base_config)")
    prof = load_profile(record.get("profile_source") or record.get("profile"))
    res = resolve(base, prof, record["name"])
    preflight([base], prof, res, sweep.sweep_dir.parent, record.get("max_parallel"))
    size = int(record.get("max_array_size") or prof.max_array_size)
    entries = {t["index"]: t for t in record["tasks"]}
    tasks = [ArrayTask(i, None, res, entries[i]["overrides"], entries[i].get("label", "")) for i in todo]
    by_chunk: dict[int, list[int]] = {}
    for position, index in enumerate(todo):
        by_chunk.setdefault(index // size * size, []).append(position)
    arrays = []
    for offset, positions in by_chunk.items():
        indices = [todo[p] - offset for p in positions]
        script = executor.with_indices(render_submitit(prof, res, folder=sweep.sweep_dir / "submitit", python=python,
                                                       array_size=len(indices)), indices, record.get("max_parallel"))
        arrays.append(ArraySpec(res, positions, offset, script, indices))
    return ArrayPlan("sweep", record["name"], prof, sweep.sweep_dir, tasks, arrays, record.get("max_parallel"),
                     record.get("metric", "val.accuracy"), record.get("mode", "max"), record.get("sweep_file"), base)


def resubmit_sweep(sweep_dir, python=None, dry_run: bool = False) -> Resubmission:
    """Submit the sweep's tasks that need a rerun (one array of just their indices); returns at once."""
    sweep = read_sweep(sweep_dir)
    with exclusive(sweep.sweep_dir, "another `hpcnn sweep` is resubmitting this sweep right now"):
        sweep = read_sweep(sweep_dir)  # as it is now that the lock is held
        statuses = sweep.statuses()
        unsure = [s.index for s in statuses if s.state == "UNKNOWN" and s.source != NOWHERE]
        if unsure:  # Slurm did not answer for them: they may still be queued; never submit a task twice
            raise HpcnnError(f"Slurm could not say whether task(s) {', '.join(map(str, unsure[:10]))} are still "
                             "queued", str(sweep.sweep_dir), "check `hpcnn status` / `squeue`, then try again")
        todo = [s.index for s in statuses if needs_rerun(s)]
        done = Resubmission(sweep, todo, [], dict(Counter(s.state for s in statuses if not needs_rerun(s))))
        if todo:
            done.plan = plan = _plan(sweep, todo, python)
            if not dry_run:
                entries, job_ids = submit_shared(plan, python, number_from=len(sweep.record["arrays"]))
                done.sweep = record_submission(plan, sweep.record, entries, job_ids, records.now_iso())
                done.array_ids = [e["job_id"] for e in entries]
        return done


__all__ = ["Resubmission", "needs_rerun", "read_sweep", "resubmit_sweep"]
