"""Slurm from the login node, split along the line submitit draws.

``site/`` knows the cluster and talks to the scheduler: profiles, resource requests,
the sbatch renderer, pre-flight checks and the only module that runs Slurm's commands.
``jobs/`` is what a user holds: submissions of one job, sweeps and mixed-resource groups,
the payload every task runs, records on disk, and the handles, statuses and result tables
that work from any later shell. ``hpcnn/cli/jobs.py`` adds the verbs to ``hpcnn``.

Never imports torch (a login node may not have it); only ``TrainPayload.__call__`` loads the trainer.
"""
from pathlib import Path

from .jobs.groups import plan_array, plan_group, submit_array, submit_group
from .jobs.handles import JobArray, JobHandle, locate
from .jobs.payload import TrainPayload
from .jobs.status import TaskStatus
from .jobs.submission import job_config, plan_job, submit
from .jobs.sweep import SweepSpec, expand, load_sweep
from .site.profiles import Profile, list_profiles, load_profile
from .site.rendering import render_job
from .site.resources import Resources, check_fits, resolve


def render(job, profile=None, resources: dict | None = None, overrides=(), runs_dir=None, run_dir=None,
           python=None) -> str:
    """The sbatch script for ``job`` as text, for users who submit by hand. Pure: runs no process.

    ``job`` is a JobConfig, a config path or None (built-in default); ``resources`` are slurm.*
    overrides such as ``{"nodes": 2, "time": "02:00:00"}``. The batch log goes to ``runs_dir``,
    which must exist when sbatch runs (Slurm opens the log before the script starts);
    `hpcnn render` creates it.
    """
    cfg = job_config(job, overrides, resources)
    prof = load_profile(profile or cfg.slurm.profile)
    res = resolve(cfg, prof)
    check_fits(res, prof)
    root = Path(runs_dir or cfg.train.runs_dir).expanduser().absolute()
    return render_job(cfg, prof, res, runs_dir=root, run_dir=run_dir, python=python)


__all__ = ["JobArray", "JobHandle", "Profile", "Resources", "SweepSpec", "TaskStatus", "TrainPayload", "check_fits",
           "expand", "list_profiles", "load_profile", "load_sweep", "locate", "plan_array", "plan_group", "plan_job",
           "render", "resolve", "submit", "submit_array", "submit_group"]
