"""Submission through submitit, with hpcnn's templates writing the script.

``HpcnnExecutor`` keeps submitit's machinery (pickled payload, job folder, result files,
job objects) and replaces only the script text: the profile's header, setup lines, srun
flags and signal come from ``render.render_submitit``. ``submit`` sends one job,
``submit_array`` one sweep as one Slurm array (several when the site's MaxArraySize
is smaller than the sweep). Both run the pre-flight first and record everything a new
shell needs (job.json / sweep.json, the rendered script, a registry entry), then return.
"""
from __future__ import annotations

import os
import shutil
import uuid
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Iterable, Sequence

from ..config import JobConfig, dump_yaml, from_dict, load_job, to_dict
from ..errors import SubmissionError
from . import records
from .jobs import JobArray, JobHandle
from .payload import TrainPayload
from .preflight import preflight
from .profiles import Profile, load_profile
from .rendering import python_words, render_submitit
from .resources import Resources, resolve
from .sweep import SweepSpec, chunks, expand, load_sweep, sweep_from_dict

LOG_PATTERN = "{job_id}_{rank}_log.{stream}"


def _executor_class():
    """Built on first use: submitit's module is imported only when something is submitted."""
    from submitit.core import utils as sutils
    from submitit.slurm.slurm import SlurmExecutor, SlurmJob

    class HpcnnExecutor(SlurmExecutor):
        """submitit's SlurmExecutor whose script text comes from hpcnn's templates."""

        def __init__(self, folder, profile: Profile, resources: Resources, python=None):
            super().__init__(folder, max_num_timeout=resources.max_requeues, python=python_words(profile, python))
            self.profile, self.resources, self._python = profile, resources, python
            self.array: dict[str, Any] = {}
            self.update_parameters(time=resources.time_min, nodes=resources.nodes,
                                   ntasks_per_node=resources.tasks_per_node)

        def _make_submission_file_text(self, command: str, uid: str) -> str:
            return render_submitit(self.profile, self.resources, folder=self.folder, python=self._python,
                                   array_size=self.array.get("size"), max_parallel=self.array.get("max_parallel"),
                                   dependency=self.array.get("dependency"))

        def submit_as_array(self, payloads: Sequence[Any], max_parallel=None, dependency=None) -> list:
            """Always one array (even of one task), so ids are uniformly ARRAY_INDEX."""
            folder = sutils.JobPaths.get_first_id_independent_folder(self.folder)
            folder.mkdir(parents=True, exist_ok=True)
            pickles = []
            for payload in payloads:
                delayed = sutils.DelayedSubmission(payload)
                delayed.set_timeout(self.resources.time_min, self.max_num_timeout)
                path = folder / f"{uuid.uuid4().hex}.pkl"
                delayed.dump(path)
                pickles.append(path)
            self.array = {"size": len(payloads), "max_parallel": max_parallel, "dependency": dependency}
            try:
                first = self._submit_command(self._submitit_command_str)
            finally:
                self.array = {}
            tasks = list(range(first.num_tasks))
            jobs = [SlurmJob(folder=self.folder, job_id=f"{first.job_id}_{i}", tasks=tasks)
                    for i in range(len(payloads))]
            for job, path in zip(jobs, pickles):
                job.paths.move_temporary_file(path, "submitted_pickle")
            return jobs

    return HpcnnExecutor


def make_executor(folder: Path, profile: Profile, res: Resources, python=None):
    try:
        return _executor_class()(folder, profile, res, python)
    except RuntimeError as err:  # submitit: 'Could not detect "srun"'
        raise SubmissionError(f"cannot submit from here: {err}", hint="run on a Slurm login node, or use --dry-run "
                                                                      "/ `hpcnn render` to only write the script")


def _submitted(fn, what: str):
    """Run a submitit submission; its failures become SubmissionError (with sbatch's message)."""
    try:
        return fn()
    except SubmissionError:
        raise
    except Exception as err:  # submitit raises FailedJobError / FailedSubmissionError with sbatch's output
        raise SubmissionError(f"{what}: {str(err).strip().splitlines()[-1] if str(err).strip() else err}",
                              hint="the script is in the run directory; `sbatch --test-only` it to see why") from err


def _job_config(job, overrides: Iterable[str] = (), slurm: dict | None = None) -> JobConfig:
    overrides = list(overrides) + [f"slurm.{k}={_yaml_value(v)}" for k, v in (slurm or {}).items()]
    if isinstance(job, JobConfig):
        if not overrides:
            return job
        from ..config import apply_overrides

        return from_dict(apply_overrides(to_dict(job), overrides), "job + overrides")
    if isinstance(job, dict):
        from ..config import apply_overrides

        return from_dict(apply_overrides(dict(job), overrides), "job dict")
    return load_job(job, overrides)


def _yaml_value(value: Any) -> str:
    import json

    return json.dumps(value)


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
    cfg = _job_config(job, overrides, resources)
    prof = load_profile(profile or cfg.slurm.profile)
    res = resolve(cfg, prof)
    runs_dir = Path(cfg.train.runs_dir).expanduser().absolute()
    if run_dir is not None:
        runs_dir = Path(run_dir).expanduser().absolute().parent
    preflight([cfg], prof, res, runs_dir)
    run_dir = Path(run_dir).expanduser().absolute() if run_dir else records.new_run_dir(runs_dir, cfg.name)
    script = render_submitit(prof, res, folder=run_dir / "submitit", python=python)
    return JobPlan(cfg, prof, res, run_dir, script)


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
    executor = make_executor(folder, plan.profile, plan.resources, python)
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "config.resolved.yaml").write_text(dump_yaml(plan.config))
    job = _submitted(lambda: executor.submit(TrainPayload(to_dict(plan.config), str(run_dir))), "sbatch failed")
    record = {"kind": "job", "job_id": job.job_id, "name": plan.config.name, "profile": plan.profile.name,
              "profile_source": plan.profile.source, "resources": plan.resources.to_dict(),
              "submitted_at": records.now_iso(), "run_dir": str(run_dir), "submitit_folder": str(folder),
              "log_pattern": str(folder / LOG_PATTERN), "previous_jobs": previous}
    records.write_json(run_dir / records.JOB_FILE, record)
    shutil.copyfile(job.paths.submission_file, run_dir / records.SCRIPT_FILE)
    records.register(job.job_id, run_dir)
    return JobHandle(job.job_id, run_dir, record)


# ---------------------------------------------------------------- sweeps

@dataclass
class SweepPlan:
    spec: SweepSpec
    base: JobConfig
    tasks: list
    profile: Profile
    resources: Resources
    sweep_dir: Path
    chunks: list
    max_parallel: int | None
    scripts: list


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
               max_array_size: int | None = None) -> SweepPlan:
    """Expand, resolve, pre-flight and render a sweep without submitting it."""
    spec, base_data = _as_spec(job_or_sweep, grid, runs, name, max_parallel)
    extra = list(overrides) + [f"slurm.{k}={_yaml_value(v)}" for k, v in (resources or {}).items()]
    base, tasks = expand(spec, extra, base_data=base_data)
    prof = load_profile(profile or base.slurm.profile)
    if max_array_size:
        prof = replace(prof, max_array_size=max_array_size)
    res = resolve(base, prof)
    if not base.slurm.job_name:
        res = replace(res, job_name=f"hpcnn-{spec.name}")
    parallel = max_parallel if max_parallel is not None else spec.max_parallel
    runs_dir = Path(base.train.runs_dir).expanduser().absolute()
    preflight([t.config for t in tasks], prof, res, runs_dir, parallel)
    sweep_dir = records.new_run_dir(runs_dir, f"sweep-{spec.name}")
    parts = chunks(len(tasks), prof.max_array_size)
    waits = "afterany:<previous array>"  # the real id is known only once the previous array is queued
    scripts = [render_submitit(prof, res, folder=sweep_dir / "submitit", python=python, array_size=count,
                               max_parallel=parallel, dependency=waits if i and parallel else None)
               for i, (_, count) in enumerate(parts)]
    return SweepPlan(spec, base, tasks, prof, res, sweep_dir, parts, parallel, scripts)


def submit_array(job_or_sweep, grid=None, runs=None, profile=None, max_parallel=None, resources: dict | None = None,
                 overrides: Iterable[str] = (), name: str | None = None, python=None,
                 max_array_size: int | None = None) -> JobArray:
    """One sweep = one Slurm array (split at the site's MaxArraySize; later chunks wait for earlier ones
    when max_parallel is set, so at most max_parallel tasks ever run at once)."""
    plan = plan_array(job_or_sweep, grid, runs, profile, max_parallel, resources, overrides, name, python,
                      max_array_size)
    sweep_dir, folder = plan.sweep_dir, plan.sweep_dir / "submitit"
    executor = make_executor(folder, plan.profile, plan.resources, python)
    width = max(3, len(str(len(plan.tasks) - 1)))
    task_dirs = []
    for task in plan.tasks:
        task_dir = sweep_dir / f"task-{task.index:0{width}d}"
        task_dir.mkdir(parents=True, exist_ok=True)
        task_dirs.append(task_dir)
    arrays, job_ids = [], []
    previous = None
    try:
        for k, (offset, count) in enumerate(plan.chunks):
            payloads = [TrainPayload(to_dict(t.config), str(d))
                        for t, d in zip(plan.tasks[offset:offset + count], task_dirs[offset:offset + count])]
            dependency = f"afterany:{previous}" if previous and plan.max_parallel else None
            jobs = _submitted(lambda: executor.submit_as_array(payloads, plan.max_parallel, dependency),
                              f"sbatch failed for array {k + 1} of {len(plan.chunks)}")
            array_id = jobs[0].job_id.split("_")[0]
            shutil.copyfile(jobs[0].paths.submission_file, sweep_dir / f"submission-{k}.sbatch")
            arrays.append({"job_id": array_id, "offset": offset, "count": count})
            job_ids += [j.job_id for j in jobs]
            previous = array_id
    except SubmissionError:
        if arrays:  # no half-submitted sweeps: cancel what went in, then report
            from . import commands

            try:
                commands.scancel([a["job_id"] for a in arrays])
            except SubmissionError:
                pass
        raise
    record = {"kind": "sweep", "name": plan.spec.name, "sweep_file": plan.spec.source, "profile": plan.profile.name,
              "profile_source": plan.profile.source, "resources": plan.resources.to_dict(),
              "submitted_at": records.now_iso(), "max_parallel": plan.max_parallel, "metric": plan.spec.metric,
              "mode": plan.spec.mode, "submitit_folder": str(folder), "log_pattern": str(folder / LOG_PATTERN),
              "arrays": arrays,
              "tasks": [{"index": t.index, "job_id": jid, "run_dir": d.name, "overrides": t.overrides}
                        for t, jid, d in zip(plan.tasks, job_ids, task_dirs)]}
    records.write_json(sweep_dir / records.SWEEP_FILE, record)
    for task, jid, task_dir in zip(plan.tasks, job_ids, task_dirs):
        records.write_json(task_dir / records.JOB_FILE, {
            "kind": "array-task", "job_id": jid, "array_job_id": jid.split("_")[0], "sweep_dir": str(sweep_dir),
            "sweep_index": task.index, "overrides": task.overrides, "profile": plan.profile.name,
            "run_dir": str(task_dir), "submitit_folder": str(folder), "log_pattern": str(folder / LOG_PATTERN),
            "submitted_at": record["submitted_at"]})
    for array in arrays:
        records.register(array["job_id"], sweep_dir)
    return JobArray(sweep_dir, record)


__all__ = ["JobPlan", "SweepPlan", "make_executor", "plan_array", "plan_job", "submit", "submit_array"]
