"""``hpcnn tune``: check a search on the login node, then queue K workers as ONE Slurm array and return.

The search is checked (``spec.check``: every key, range and value against the job schema) and
its job config pre-flighted exactly as ``hpcnn submit`` does (data, writable runs_dir, site
limits) before anything is written or queued. The search directory then gets ``search.json``
(what workers read) and the study's journal, and the array carries one payload for all
workers (``TunePayload``: each worker pulls trials, no task-specific state at submission).

A search directory given again (instead of a search file) queues K more workers on the same
study: they continue until its budget is spent.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..files import atomic_write_json, new_run_dir
from ..slurm.site.cost import Cost, cost_of
from ..slurm.site.preflight import preflight
from ..slurm.site.profiles import Profile, load_profile
from ..slurm.site.rendering import render_submitit
from ..slurm.site.resources import Resources, resolve
from .spec import RECORD, Search, load_search, read_record, to_record


@dataclass
class TunePlan:
    """Everything decided before sbatch: what --dry-run shows."""

    search: Search
    profile: Profile
    resources: Resources
    search_dir: Path
    workers: int
    script: str
    existing: bool = False  # more workers for a search directory already there

    @property
    def cost(self) -> Cost:
        return cost_of(self.resources, self.workers)


def plan_tune(search_file: str | Path, profile=None, python=None, workers: int | None = None) -> TunePlan:
    """Check, resolve, pre-flight and render the workers' array; nothing is written or queued."""
    path = Path(search_file)  # a search directory: more workers for it
    search, existing = (read_record(path), path.absolute()) if path.is_dir() else (load_search(path), None)
    count = workers or search.spec.workers.count
    prof = load_profile(profile or search.base.slurm.profile)
    res = resolve(search.base, prof, f"tune-{search.spec.name}")
    runs_dir = Path(search.base.train.runs_dir).expanduser().absolute()
    preflight([search.base], prof, res, runs_dir, count)
    search_dir = existing or new_run_dir(runs_dir, f"tune-{search.spec.name}")
    script = render_submitit(prof, res, folder=search_dir / "submitit", python=python, array_size=count)
    return TunePlan(search, prof, res, search_dir, count, script, existing is not None)


def prepare(search: Search, search_dir: Path) -> None:
    """search.json and the study, before any worker starts (workers and `tune status` only open them)."""
    from .study import open_study

    search_dir.mkdir(parents=True, exist_ok=True)
    if not (search_dir / RECORD).is_file():
        atomic_write_json(search_dir / RECORD, to_record(search))
    open_study(search_dir, search)


def submit_tune(search_file: str | Path, profile=None, python=None, workers: int | None = None) -> TunePlan:
    """Pre-flight, then K workers as one Slurm array (nothing waits). Returns the plan; its search_dir holds all."""
    from ..slurm.jobs import executor, records
    from .payload import TunePayload

    plan = plan_tune(search_file, profile, python, workers)
    prepare(plan.search, plan.search_dir)
    submitter = executor.make_executor(plan.search_dir / "submitit", plan.profile, plan.resources, python)
    array_id, script = executor.submitted(
        lambda: submitter.submit_shared(TunePayload(str(plan.search_dir)), list(range(plan.workers))), "sbatch failed")
    entry = {"job_id": array_id, "workers": plan.workers, "profile": plan.profile.name,
             "resources": plan.resources.to_dict(), "submitted_at": records.now_iso(), "script": str(script)}
    path = plan.search_dir / "arrays.json"
    arrays = records.read_json(path) if path.is_file() else []
    atomic_write_json(path, arrays + [entry])
    records.register(array_id, plan.search_dir)  # `hpcnn status` lists it; `hpcnn status JOB_ID` finds it
    return plan


__all__ = ["TunePlan", "plan_tune", "prepare", "submit_tune"]
