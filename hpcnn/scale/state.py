"""What a study directory remembers (``study.json``) and what each point's state is now.

``study.json`` holds the study as last submitted (spec, points with their batch) and every
point's attempts (job id, run directory, fingerprint of what it measured). A point's state
comes from its latest attempt: ``done`` when its ``bench.json`` exists (the measurement is
complete, whatever Slurm says about the job's last seconds), ``pending``/``running`` while
Slurm has it, ``failed`` (with the reason: Slurm state, exit code, the telling line of rank
0's stderr) when it ended without one, ``missing`` with no attempt. One Slurm query for all.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import HpcnnError
from ..files import atomic_write_json, read_json_dict
from ..slurm.jobs.status import failure_reason
from ..slurm.site import commands
from ..slurm.site.commands import ACTIVE, JobState
from .payload import BENCH_FILE

STATE_FILE = "study.json"
DONE, FAILED, MISSING = "done", "failed", "missing"


@dataclass
class PointState:
    key: str
    status: str                         # done | pending | running | failed | missing
    attempt: dict | None = None         # the latest attempt
    slurm: JobState | None = None
    reason: str = ""
    bench: dict | None = None
    job_ids: list = field(default_factory=list)

    @property
    def active(self) -> bool:
        return self.status not in (DONE, FAILED, MISSING)

    @property
    def nodelist(self) -> str:
        nodes = self.slurm.nodes.strip() if self.slurm else ""
        return "" if nodes in ("", "None assigned") else nodes


def read_state(study_dir: Path) -> dict | None:
    path = Path(study_dir) / STATE_FILE
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except ValueError as err:
        raise HpcnnError(f"{STATE_FILE} is not valid JSON: {err}", str(path)) from None


def require_state(study_dir: Path) -> dict:
    state = read_state(study_dir)
    if state is None:
        raise HpcnnError(f"not a study directory (no {STATE_FILE})", str(study_dir),
                         "pass the directory `hpcnn scale STUDY.yaml` printed, or the study file")
    return state


def write_state(study_dir: Path, state: dict) -> None:
    atomic_write_json(Path(study_dir) / STATE_FILE, state)


def read_bench(run_dir: Path) -> dict | None:
    data = read_json_dict(Path(run_dir) / BENCH_FILE)
    return data if data and isinstance(data.get("images_per_second"), dict) else None


def slurm_states(job_ids: list[str]) -> dict[str, JobState]:
    """One sacct query; jobs it does not know yet (just submitted) are asked of squeue."""
    if not job_ids:
        return {}
    states = commands.query_states(job_ids)
    unknown = [j for j in job_ids if j not in states]
    if unknown:
        states.update(commands.squeue(unknown))
    return states


def point_states(state: dict, keys: list[str] | None = None) -> dict[str, PointState]:
    """The state of every point (``keys``: default all in study.json) from one Slurm query."""
    entries = state.get("points", {})
    keys = list(entries) if keys is None else keys
    latest = {k: entries[k]["attempts"][-1] for k in keys if k in entries and entries[k].get("attempts")}
    slurm = slurm_states([a["job_id"] for a in latest.values()])
    out = {}
    for key in keys:
        attempt = latest.get(key)
        if attempt is None:
            out[key] = PointState(key, MISSING)
            continue
        job_ids = [a["job_id"] for a in entries[key]["attempts"]]
        job = slurm.get(attempt["job_id"])
        bench = read_bench(Path(attempt["run_dir"]))
        if bench is not None:
            out[key] = PointState(key, DONE, attempt, job, "", bench, job_ids)
        elif job is not None and job.state in ACTIVE:
            out[key] = PointState(key, "pending" if job.state == "PENDING" else "running", attempt, job,
                                  f"pending: {job.reason}" if job.reason else "", None, job_ids)
        else:
            err_log = Path(attempt["log_pattern"].format(job_id=attempt["job_id"], rank=0, stream="err"))
            reason = failure_reason(job, err_log) if job else "Slurm no longer knows the job and it left no result"
            if job is not None and job.state == "COMPLETED":
                reason = f"COMPLETED without {BENCH_FILE}; {reason}"
            out[key] = PointState(key, FAILED, attempt, job, reason, None, job_ids)
    return out


__all__ = ["DONE", "FAILED", "MISSING", "PointState", "STATE_FILE", "point_states", "read_bench", "read_state",
           "require_state", "slurm_states", "write_state"]
