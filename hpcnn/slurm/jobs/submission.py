"""One training job to Slurm: ``plan_job`` (resolve, pre-flight, render; what --dry-run shows) and ``submit``.

``submit`` runs the pre-flight first, sends the job through submitit, records everything a
new shell needs (job.json, the rendered script, a registry entry) and returns a handle at
once: nothing on the login node waits. Sweeps and mixed-resource groups are in ``groups``.
"""
from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

from ...config import JobConfig, apply_overrides, from_dict, load_job, to_dict
from ...files import atomic_write_json, new_run_dir
from ...rundir import write_config
from ..site.preflight import preflight
from ..site.profiles import Profile, load_profile
from ..site.rendering import render_submitit
from ..site.resources import Resources, resolve
from . import executor, records
from .handles import JobHandle
from .payload import TrainPayload
from .sweep import override_text


def job_config(job, overrides: Iterable[str] = (), slurm: dict | None = None, where: str | None = None) -> JobConfig:
    """A JobConfig, a config dict, a YAML path or None (the built-in default), plus overrides and slurm.* values."""
    overrides = list(overrides) + [override_text(f"slurm.{k}", v) for k, v in (slurm or {}).items()]
    if isinstance(job, JobConfig):
        if not overrides:
            return job
        return from_dict(apply_overrides(to_dict(job), overrides), where or "job + overrides")
    if isinstance(job, dict):
        return from_dict(apply_overrides(dict(job), overrides), where or "job dict")
    return load_job(job, overrides)


@dataclass
class JobPlan:
    """Everything decided before sbatch runs: what `--dry-run` shows."""

    config: JobConfig
    profile: Profile
    resources: Resources
    run_dir: Path
    script: str


def plan_job(job, profile=None, resources: dict | None = None, overrides: Iterable[str] = (), python=None,
             run_dir: str | Path | None = None) -> JobPlan:
    """Resolve, pre-flight and render one job without submitting it.

    ``run_dir``: continue an existing run (its newest checkpoint) instead of starting a new directory.
    """
    cfg = job_config(job, overrides, resources)
    prof = load_profile(profile or cfg.slurm.profile)
    res = resolve(cfg, prof)
    runs_dir = Path(cfg.train.runs_dir).expanduser().absolute()
    if run_dir is not None:
        runs_dir = Path(run_dir).expanduser().absolute().parent
    preflight([cfg], prof, res, runs_dir)
    run_dir = Path(run_dir).expanduser().absolute() if run_dir else new_run_dir(runs_dir, cfg.name)
    return JobPlan(cfg, prof, res, run_dir, render_submitit(prof, res, folder=run_dir / "submitit", python=python))


def submit(job, profile=None, resources: dict | None = None, overrides: Iterable[str] = (), python=None,
           run_dir: str | Path | None = None) -> JobHandle:
    """Pre-flight, submit one training job, record it, return its handle (nothing waits).

    ``run_dir`` continues an existing run directory from its newest checkpoint (e.g. after
    ``slurm.max_requeues`` ran out); by default a new one is made under ``train.runs_dir``.
    """
    plan = plan_job(job, profile, resources, overrides, python, run_dir)
    previous = []
    if (plan.run_dir / records.JOB_FILE).is_file():
        old = records.read_json(plan.run_dir / records.JOB_FILE)
        previous = old.get("previous_jobs", []) + [old.get("job_id")]
    run_dir, folder = plan.run_dir, plan.run_dir / "submitit"
    submitter = executor.make_executor(folder, plan.profile, plan.resources, python)
    run_dir.mkdir(parents=True, exist_ok=True)
    write_config(run_dir, plan.config)
    job = executor.submitted(lambda: submitter.submit(TrainPayload(to_dict(plan.config), str(run_dir))),
                             "sbatch failed")
    record = {"kind": "job", "job_id": job.job_id, "name": plan.config.name, "profile": plan.profile.name,
              "profile_source": plan.profile.source, "resources": plan.resources.to_dict(),
              "submitted_at": records.now_iso(), "run_dir": str(run_dir), "submitit_folder": str(folder),
              "log_pattern": str(folder / executor.LOG_PATTERN), "previous_jobs": previous}
    atomic_write_json(run_dir / records.JOB_FILE, record)
    shutil.copyfile(job.paths.submission_file, run_dir / records.SCRIPT_FILE)
    records.register(job.job_id, run_dir)
    return JobHandle(job.job_id, run_dir, record)


__all__ = ["JobPlan", "job_config", "plan_job", "submit"]
