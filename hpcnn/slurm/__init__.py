"""Slurm from the login node: profiles, rendering, pre-flight, submitit submission, job handles.

Never imports torch (a login node may not have it); only ``TrainPayload.__call__`` loads the trainer.
"""
from .jobs import JobArray, JobHandle, TaskStatus, locate
from .payload import TrainPayload
from .profiles import Profile, list_profiles, load_profile
from .rendering import render_job
from .resources import Resources, check_fits, resolve
from .submission import plan_array, plan_job, submit, submit_array
from .sweep import SweepSpec, expand, load_sweep


def render(job, profile=None, resources: dict | None = None, overrides=(), runs_dir=None, run_dir=None,
           python=None) -> str:
    """The sbatch script for ``job`` as text, for users who submit by hand. Pure: runs no process.

    ``job`` is a JobConfig, a config path or None (built-in default); ``resources`` are slurm.*
    overrides such as ``{"nodes": 2, "time": "02:00:00"}``. The batch log goes to ``runs_dir``,
    which must exist when sbatch runs (Slurm opens the log before the script starts);
    `hpcnn render` creates it.
    """
    from pathlib import Path

    from .submission import _job_config

    cfg = _job_config(job, overrides, resources)
    prof = load_profile(profile or cfg.slurm.profile)
    res = resolve(cfg, prof)
    check_fits(res, prof)
    root = Path(runs_dir or cfg.train.runs_dir).expanduser().absolute()
    return render_job(cfg, prof, res, runs_dir=root, run_dir=run_dir, python=python)


__all__ = ["JobArray", "JobHandle", "Profile", "Resources", "SweepSpec", "TaskStatus", "TrainPayload", "expand",
           "list_profiles", "load_profile", "load_sweep", "locate", "plan_array", "plan_job", "render", "resolve",
           "submit", "submit_array"]
