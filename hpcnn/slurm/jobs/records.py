"""What a submission leaves on disk, so a new shell can find it later without a live login process.

- ``RUN_DIR/job.json``: job id, profile, resources, submit time, where submitit keeps logs.
- ``SWEEP_DIR/sweep.json``: a sweep or a mixed-resource group: the arrays (id, request, which
  tasks) and every task (job id, run dir, request, overrides).
- ``$HPCNN_STATE_DIR/jobs/<id>`` (default ``~/.local/state/hpcnn/jobs``): a one-line pointer
  from a job or array id to its run or sweep directory, so ``hpcnn status 1234`` works.
"""
from __future__ import annotations

import contextlib
import json
import os
import time
from pathlib import Path
from typing import Any

from ...errors import HpcnnError
from ...files import atomic_write_json, atomic_write_text
from ...rundir import JOB_FILE

SWEEP_FILE = "sweep.json"
SCRIPT_FILE = "submission.sbatch"


def state_dir() -> Path:
    explicit = os.environ.get("HPCNN_STATE_DIR")
    if explicit:
        return Path(explicit)
    base = os.environ.get("XDG_STATE_HOME") or os.path.join(os.path.expanduser("~"), ".local", "state")
    return Path(base) / "hpcnn"


def now_iso() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S%z")


def read_json(path: Path) -> dict[str, Any]:
    try:
        return json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise HpcnnError(f"no {Path(path).name} here", str(Path(path).parent),
                         "pass a run or sweep directory made by `hpcnn submit` / `hpcnn sweep`") from None
    except json.JSONDecodeError as err:
        raise HpcnnError(f"{Path(path).name} is not valid JSON: {err}", str(path)) from None


def write_unit(directory: Path, record: dict) -> None:
    """sweep.json, atomically: indented while small enough to read, compact (C-encoded, fast) beyond 1000 tasks."""
    indent = 2 if len(record.get("tasks", ())) <= 1000 else None
    atomic_write_text(Path(directory) / SWEEP_FILE, json.dumps(record, indent=indent, default=str) + "\n")


def write_task(run_dir: Path, job_id: str, index: int, overrides: list, label: str, resources: dict | None,
               unit: dict) -> None:
    """An array task's job.json (what `hpcnn status RUN_DIR` reads); ``unit``: the keys it shares with sweep.json."""
    atomic_write_json(Path(run_dir) / JOB_FILE, {
        "kind": "array-task", "job_id": job_id, "array_job_id": job_id.split("_")[0],
        "sweep_dir": str(Path(run_dir).parent), "sweep_index": index, "overrides": overrides, "label": label,
        "resources": resources, "run_dir": str(run_dir), **unit})


def register(job_id: str, directory: Path) -> None:
    """Remember which directory a job id belongs to (best effort: never fails a submission)."""
    folder = state_dir() / "jobs"
    with contextlib.suppress(OSError):
        folder.mkdir(parents=True, exist_ok=True)
        (folder / str(job_id)).write_text(str(Path(directory).absolute()) + "\n")


def lookup(job_id: str) -> Path | None:
    path = state_dir() / "jobs" / str(job_id)
    try:
        text = path.read_text().strip()
    except OSError:
        return None
    return Path(text) if text else None


def recent(limit: int = 20) -> list[tuple[str, Path]]:
    """The most recently registered (job id, directory) pairs, newest first."""
    folder = state_dir() / "jobs"
    if not folder.is_dir():
        return []
    entries = sorted(folder.iterdir(), key=lambda p: p.stat().st_mtime, reverse=True)[:limit]
    found = [(entry.name, lookup(entry.name)) for entry in entries]
    return [(job_id, target) for job_id, target in found if target is not None]


__all__ = ["JOB_FILE", "SCRIPT_FILE", "SWEEP_FILE", "lookup", "now_iso", "read_json", "recent", "register",
           "state_dir", "write_task", "write_unit"]
