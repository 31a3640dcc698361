"""Many tasks as one planned unit: sweeps (one request) and mixed-resource groups (one array per request).

A sweep varies the training config under one resource request: one array (split at the
site's MaxArraySize). A group is any list of jobs, each with its own ``slurm`` section
(e.g. the same job on 1, 2 and 4 nodes): tasks are grouped by their resolved request and
submitted as the fewest arrays that allows. Both are pre-flighted task by task before
anything is queued, recorded in one ``sweep.json`` and followed with one ``JobArray``
(``hpcnn status DIR``, ``hpcnn results DIR``) from any later shell.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Iterable, Sequence

from ...config import JobConfig, to_dict
from ...errors import ConfigError
from ...files import new_run_dir
from ..site.preflight import naming_task, preflight, preflight_tasks
from ..site.profiles import Profile
from ..site.resources import resolve
from .arrays import ArrayPlan, ArrayTask, plan_arrays, site_profile, submit_plan
from .handles import JobArray
from .submission import job_config
from .sweep import SweepSpec, check_ranking, expand, load_sweep, override_text, sweep_from_dict
from .task_checks import preflight_configs


# ---------------------------------------------------------------- sweeps: one request, one array

def _as_spec(job_or_sweep, grid=None, runs=None, name=None, max_parallel=None) -> tuple[SweepSpec, dict | None]:
    if isinstance(job_or_sweep, SweepSpec):
        return job_or_sweep, None
    if isinstance(job_or_sweep, (str, os.PathLike)) and grid is None and runs is None:
        return load_sweep(job_or_sweep), None
    data: dict = {"grid": dict(grid or {}), "runs": [list(r) for r in (runs or [])], "max_parallel": max_parallel}
    base_data = None
    if isinstance(job_or_sweep, JobConfig):
        base_data = to_dict(job_or_sweep)
    elif isinstance(job_or_sweep, dict):
        base_data = dict(job_or_sweep)
    elif job_or_sweep is not None:
        data["base"] = str(Path(job_or_sweep).absolute())
    data["name"] = name or (Path(data["base"]).stem if data.get("base") else "sweep")
    return sweep_from_dict(data, "submit_array arguments"), base_data


def plan_array(job_or_sweep, grid=None, runs=None, profile=None, max_parallel=None, resources: dict | None = None,
               overrides: Iterable[str] = (), name: str | None = None, python=None,
               max_array_size: int | None = None) -> ArrayPlan:
    """Expand, resolve, pre-flight and render a sweep without submitting it."""
    spec, base_data = _as_spec(job_or_sweep, grid, runs, name, max_parallel)
    extra = list(overrides) + [override_text(f"slurm.{k}", v) for k, v in (resources or {}).items()]
    base, tasks = expand(spec, extra, base_data=base_data)
    prof = site_profile(profile or base.slurm.profile, max_array_size)
    res = resolve(base, prof, spec.name)
    parallel = max_parallel if max_parallel is not None else spec.max_parallel
    runs_dir = Path(base.train.runs_dir).expanduser().absolute()
    preflight(preflight_configs(base, tasks), prof, res, runs_dir, parallel)
    unit_dir = new_run_dir(runs_dir, f"sweep-{spec.name}")
    items = [ArrayTask(t.index, t, res, t.overrides, t.label) for t in tasks]
    return ArrayPlan("sweep", spec.name, prof, unit_dir, items, plan_arrays(items, prof, unit_dir, python, parallel),
                     parallel, spec.metric, spec.mode, spec.source, base)


def submit_array(job_or_sweep, grid=None, runs=None, profile=None, max_parallel=None, resources: dict | None = None,
                 overrides: Iterable[str] = (), name: str | None = None, python=None,
                 max_array_size: int | None = None) -> JobArray:
    """One sweep = one Slurm array (split at the site's MaxArraySize; later chunks wait for earlier ones
    when max_parallel is set, so at most max_parallel tasks ever run at once)."""
    plan = plan_array(job_or_sweep, grid, runs, profile, max_parallel, resources, overrides, name, python,
                      max_array_size)
    return submit_plan(plan, {"sweep_file": plan.source, "resources": plan.resources.to_dict(),
                              "max_array_size": plan.profile.max_array_size}, python)


# ---------------------------------------------------------------- groups: one array per distinct request

def _split(item) -> tuple[object, dict | None]:
    """A task is a job (JobConfig, dict, path, None) or a (job, {slurm key: value}) pair."""
    if isinstance(item, (tuple, list)):
        if len(item) != 2 or not (item[1] is None or isinstance(item[1], dict)):
            raise ConfigError(f"a group task is a job config or a (job, resources dict) pair, got {item!r}")
        return item[0], item[1]
    return item, None


def _group_profile(configs: list[JobConfig], profile: str | os.PathLike | Profile | None):
    if profile is not None:
        return profile
    first = configs[0].slurm.profile
    for i, cfg in enumerate(configs):
        if cfg.slurm.profile != first:
            raise ConfigError(f"task {i} asks for profile '{cfg.slurm.profile}' but task 0 for '{first}'",
                              "slurm.profile", "a group is submitted to one site: pass profile=...")
    return first


def plan_group(tasks: Sequence, profile=None, name: str | None = None, max_parallel: int | None = None,
               overrides: Iterable[str] = (), python=None, max_array_size: int | None = None,
               metric: str = "val.accuracy", mode: str = "max") -> ArrayPlan:
    """Resolve, pre-flight (every task, errors name it) and render a mixed-resource group without submitting.

    ``tasks``: job configs (JobConfig, dict, YAML path, None for the built-in default), each with
    its own ``slurm`` section, or (job, {slurm key: value}) pairs; ``overrides`` apply to every task.
    """
    check_ranking(metric, mode, "plan_group arguments")
    items = [_split(item) for item in tasks]
    if not items:
        raise ConfigError("a group needs at least one task", "plan_group arguments")
    configs = []
    for i, (job, slurm) in enumerate(items):
        with naming_task(str(i)):
            configs.append(job_config(job, overrides, slurm, where=f"group task {i}"))
    prof = site_profile(_group_profile(configs, profile), max_array_size)
    group_name = name or configs[0].name
    planned = []
    for i, (cfg, (_, slurm)) in enumerate(zip(configs, items)):
        task_overrides = [override_text(f"slurm.{k}", v) for k, v in (slurm or {}).items()]
        planned.append(ArrayTask(i, cfg, resolve(cfg, prof, group_name), task_overrides,
                                 " ".join(task_overrides) or cfg.name))
    runs_dir = Path(configs[0].train.runs_dir).expanduser().absolute()
    preflight_tasks([(f"{t.index} ({t.label})", t.config, t.resources) for t in planned], prof, runs_dir,
                    max_parallel)
    unit_dir = new_run_dir(runs_dir, f"group-{group_name}")
    return ArrayPlan("group", group_name, prof, unit_dir, planned,
                     plan_arrays(planned, prof, unit_dir, python, max_parallel), max_parallel, metric, mode)


def submit_group(tasks: Sequence, profile=None, name: str | None = None, max_parallel: int | None = None,
                 overrides: Iterable[str] = (), python=None, max_array_size: int | None = None,
                 metric: str = "val.accuracy", mode: str = "max") -> JobArray:
    """Submit tasks with different resource requests as one unit: one Slurm array per distinct request.

        group = hpcnn.submit_group([(job, {"nodes": 1}), (job, {"nodes": 2}), (job, {"nodes": 4})],
                                   profile="mysite", metric="images_per_second")

    Returns at once; the handle (or ``JobArray.from_dir``, ``hpcnn status DIR`` in a new shell)
    reports every task's state, nodes and results.
    """
    plan = plan_group(tasks, profile, name, max_parallel, overrides, python, max_array_size, metric, mode)
    return submit_plan(plan, {}, python)


__all__ = ["plan_array", "plan_group", "submit_array", "submit_group"]
