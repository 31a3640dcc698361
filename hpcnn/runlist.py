"""``hpcnn runs``: the run directories under a runs folder, and removing old ones safely.

A directory counts as a run only if hpcnn made it: it holds one of ``MARKERS`` (a run's
config/summary/job record, or a sweep's or study's record). Listing reads those small files
(never a checkpoint). Removing refuses, with the reason, anything that is not such a
directory (a symlink, the runs folder itself, a folder without markers) and any run that may
still be running: its Slurm job is still in the queue, a live process holds its run-directory
lock (``hpcnn.rundir_lock``), or it has no final summary and wrote progress in the last
``QUIET_S`` seconds. Torch-free.
"""
from __future__ import annotations

import contextlib
import os
import re
import shutil
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Iterable

from . import results, rundir
from .errors import HpcnnError
from .files import read_json_dict

MARKERS = (rundir.JOB_FILE, rundir.SUMMARY_FILE, rundir.CONFIG_FILE, "sweep.json", "study.json")
ACTIVITY_FILES = (rundir.PROGRESS_FILE, rundir.METRICS_FILE, "train.log")
QUIET_S = 600.0   # a run without a final summary that wrote nothing for this long is not running
_AGE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw]?)\s*$")
_UNIT_S = {"": 86400.0, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "w": 7 * 86400.0}


@dataclass
class RunInfo:
    path: Path
    kind: str               # run | sweep | group | predict | study
    status: str             # completed | early_stopped | preempted | submitted | no summary | N tasks ...
    metric: str | None      # the monitored metric's name (summary's monitor.metric)
    value: float | None     # its best value
    age_s: float            # since the run last wrote one of its records
    size_bytes: int
    job_ids: list

    @property
    def name(self) -> str:
        return self.path.name

    def to_dict(self) -> dict:
        return {**asdict(self), "path": str(self.path), "name": self.name}


def is_run_dir(path: Path) -> bool:
    path = Path(path)
    return path.is_dir() and not path.is_symlink() and any((path / m).is_file() for m in MARKERS)


def parse_age(text: str) -> float:
    """'7d', '12h', '30m', '90s', '2w' or a number of days -> seconds."""
    m = _AGE.match(str(text))
    if not m:
        raise HpcnnError(f"--older-than {text!r} is not an age", "--older-than", "write it as 7d, 12h, 30m or 2w")
    return float(m.group(1)) * _UNIT_S[m.group(2)]


def dir_size(path: Path) -> int:
    total = 0
    for root, _, files in os.walk(path):
        for name in files:
            with contextlib.suppress(OSError):
                total += os.lstat(os.path.join(root, name)).st_size
    return total


def last_write(path: Path, names: Iterable[str] = MARKERS + ACTIVITY_FILES) -> float:
    """The newest modification time among the run's records (the directory's own, if it has none)."""
    times = []
    for name in names:
        with contextlib.suppress(OSError):
            times.append((path / name).stat().st_mtime)
    return max(times) if times else path.stat().st_mtime


def job_ids(path: Path) -> list[str]:
    """The Slurm job ids a run directory belongs to: its job, or a unit's arrays."""
    unit = read_json_dict(path / "sweep.json")
    if unit:
        return [str(a["job_id"]) for a in unit.get("arrays", []) if a.get("job_id")]
    study = read_json_dict(path / "study.json")
    if study:
        return [str(a["job_id"]) for p in study.get("points", {}).values() for a in p.get("attempts", [])[-1:]]
    job = read_json_dict(path / rundir.JOB_FILE)
    return [str(job["job_id"])] if job and job.get("job_id") else []


def describe(path: Path, now: float | None = None) -> RunInfo:
    path = Path(path)
    now = time.time() if now is None else now
    unit = read_json_dict(path / "sweep.json")
    summary = rundir.read_summary(path)
    if unit:
        kind, status = unit.get("kind", "sweep"), f"{len(unit.get('tasks', []))} tasks"
    elif (path / "study.json").is_file():
        kind, status = "study", f"{len((read_json_dict(path / 'study.json') or {}).get('points', {}))} points"
    else:
        kind = "run"
        status = summary.get("status", "?") if summary else ("submitted" if (path / rundir.JOB_FILE).is_file()
                                                              else "no summary")
    monitor = (summary or {}).get("monitor") or {}
    best = monitor.get("best")
    value = best if isinstance(best, (int, float)) and not isinstance(best, bool) else None
    return RunInfo(path, kind, status, monitor.get("metric"), value, max(0.0, now - last_write(path)),
                   dir_size(path), job_ids(path))


def list_runs(runs_dir: Path) -> list[RunInfo]:
    """Every run directory directly under ``runs_dir``, newest first."""
    runs_dir = Path(runs_dir)
    if not runs_dir.is_dir():
        raise HpcnnError("no such runs directory", str(runs_dir), "pass the folder your runs are in (train.runs_dir)")
    now = time.time()
    found = [describe(child, now) for child in sorted(runs_dir.iterdir()) if is_run_dir(child)]
    return sorted(found, key=lambda r: r.age_s)


def lock_holder(path: Path) -> str:
    """Who holds the run's lock (``hpcnn.rundir_lock``: a live training process), or "" if nobody does."""
    from .rundir_lock import LOCK_NAME, heartbeat_age, me, read_holder, stale_reason

    lock = Path(path) / LOCK_NAME
    age = heartbeat_age(lock)
    if age is None:
        return ""
    holder = read_holder(lock)
    if stale_reason(holder, age, me()) is not None:
        return ""  # its holder is gone: the lock no longer protects anything
    return holder.describe() if holder else "a process that is still writing its lock file"


def queued_jobs(ids: list[str]) -> set[str]:
    """Of these job ids, those the live queue still holds; empty where there is no Slurm."""
    if not ids:
        return set()
    from .errors import SubmissionError
    from .slurm.site import commands

    try:
        live = commands.squeue(ids)
    except SubmissionError:
        return set()
    return {job_id.split("_")[0] for job_id in live}


def busy_reason(info: RunInfo, queued: set[str]) -> str:
    """Why this run must not be removed now ("" if it may be)."""
    waiting = [j for j in info.job_ids if j.split("_")[0] in queued]
    if waiting:
        return f"job {waiting[0]} is still in the Slurm queue (cancel it first: hpcnn cancel {waiting[0]})"
    holder = lock_holder(info.path)
    if holder:
        return f"its run-directory lock is held by {holder}: it is training"
    summary = rundir.read_summary(info.path)
    recent = time.time() - last_write(info.path, ACTIVITY_FILES + (rundir.SUMMARY_FILE,))
    if info.kind == "run" and not results.is_final(summary) and recent < QUIET_S:
        return f"no final summary and it wrote progress {recent:.0f} s ago: it may be running"
    return ""


def check_removable(path: Path) -> None:
    """Only hpcnn run directories, never a symlink or the runs folder itself (it holds no marker)."""
    path = Path(path)
    if path.is_symlink():
        raise HpcnnError("is a symbolic link, not a run directory: not removed", str(path))
    if not path.is_dir():
        raise HpcnnError("no such run directory", str(path), "see `hpcnn runs` for the runs there are")
    if not is_run_dir(path):
        raise HpcnnError(f"not an hpcnn run directory (none of {', '.join(MARKERS)}): not removed", str(path))


def plan_removal(paths: list[Path]) -> tuple[list[RunInfo], list[tuple[Path, str]]]:
    """(runs that may go, [(run, why it stays)]): one squeue query for all of them."""
    infos, refused = [], []
    for path in paths:
        try:
            check_removable(path)
        except HpcnnError as err:
            refused.append((Path(path), err.what))
            continue
        infos.append(describe(path))
    queued = queued_jobs([j for info in infos for j in info.job_ids])
    ok = []
    for info in infos:
        why = busy_reason(info, queued)
        if why:
            refused.append((info.path, why))
        else:
            ok.append(info)
    return ok, refused


def remove(infos: list[RunInfo], confirm: Callable[[list[RunInfo]], bool]) -> list[Path]:
    """Delete the runs if ``confirm`` agrees; returns what was removed."""
    if not infos or not confirm(infos):
        return []
    for info in infos:
        shutil.rmtree(info.path)
    return [info.path for info in infos]


def human_size(n: int) -> str:
    size = float(n)
    for unit in ("B", "KB", "MB", "GB"):
        if size < 1024:
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} TB"


def human_age(seconds: float) -> str:
    for unit, span in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= span:
            return f"{seconds / span:.0f}{unit}"
    return f"{seconds:.0f}s"


__all__ = ["MARKERS", "QUIET_S", "RunInfo", "busy_reason", "check_removable", "describe", "human_age",
           "human_size", "is_run_dir", "list_runs", "lock_holder", "parse_age", "plan_removal", "remove"]
