"""Several tasks as Slurm arrays: the one array submission that sweeps and groups share.

A planned unit is a list of tasks, each with its own config and resolved request. Tasks
with equal requests share an array (first-seen order); an array longer than the site's
MaxArraySize is split into several, each indexed from 0 (MaxArraySize bounds the index).
With ``max_parallel`` every later array waits for the one before (``afterany``), so at
most max_parallel tasks of the unit run at once. Submitting is all or nothing: if one
sbatch fails, the arrays already queued are cancelled. What is submitted is recorded in
``sweep.json`` (arrays with their requests, tasks with their job ids, run dirs and
requests) and each task's ``job.json``, and every array id is registered for ``hpcnn status``.

A sweep's array carries one payload for all its tasks (``SweepPayload``: the task reads its
overrides from ``sweep.json`` and makes its own run directory and ``job.json``), so the
login node's cost barely grows with the number of tasks. Groups and scaling studies, whose
tasks each have their own config, keep one payload per task.
"""
from __future__ import annotations

import contextlib
import shutil
from dataclasses import dataclass, field, replace
from pathlib import Path

from ...config import JobConfig, to_dict
from ...errors import SubmissionError
from ...files import atomic_write_json
from ..site import commands
from ..site.profiles import Profile, load_profile
from ..site.rendering import render_submitit
from ..site.resources import Resources
from . import executor, records
from .handles import JobArray
from .payload import SweepPayload, TrainPayload
from .sweep import chunks

WAIT_FOR_PREVIOUS = "afterany:<previous array>"  # in dry-run scripts: the real id exists only once it is queued


@dataclass
class ArrayTask:
    """One task of a unit: its position, validated config, resolved request and how tables name it."""

    index: int
    source: object  # its JobConfig, or a sweep task whose ``.config`` is built only when asked for
    resources: Resources
    overrides: list[str] = field(default_factory=list)
    label: str = ""

    @property
    def config(self) -> JobConfig | None:
        return self.source if self.source is None or isinstance(self.source, JobConfig) else self.source.config


@dataclass
class ArraySpec:
    """One Slurm array: which tasks it runs (array index i runs ``tasks[i]``) under one request."""

    resources: Resources
    tasks: list[int]
    offset: int      # where this array starts among the unit's tasks with this request
    script: str      # as rendered for the dry run
    indices: list[int] | None = None  # the array index of each task (e.g. 3,7,12 on a resubmission); None: 0..n-1

    @property
    def array_indices(self) -> list[int]:
        return list(range(len(self.tasks))) if self.indices is None else list(self.indices)


@dataclass
class ArrayPlan:
    """A sweep or a group, planned: pre-flight passed, scripts rendered, nothing queued."""

    kind: str                      # "sweep" | "group" | "predict"
    name: str
    profile: Profile
    unit_dir: Path
    tasks: list[ArrayTask]
    arrays: list[ArraySpec]
    max_parallel: int | None
    metric: str = "val.accuracy"
    mode: str = "max"
    source: str | None = None      # the sweep file, if any
    base: JobConfig | None = None  # a sweep's base config

    @property
    def sweep_dir(self) -> Path:
        return self.unit_dir

    @property
    def scripts(self) -> list[str]:
        return [a.script for a in self.arrays]

    @property
    def chunks(self) -> list[tuple[int, int]]:
        """(offset, count) of every array."""
        return [(a.offset, len(a.tasks)) for a in self.arrays]

    @property
    def requests(self) -> list[Resources]:
        """The distinct requests, in the order their arrays are submitted."""
        seen: dict[str, Resources] = {}
        for array in self.arrays:
            seen.setdefault(array.resources.key(), array.resources)
        return list(seen.values())

    @property
    def resources(self) -> Resources | None:
        """The one request every task shares (always so for a sweep); None for a mixed group."""
        requests = self.requests
        return requests[0] if len(requests) == 1 else None


def site_profile(profile, max_array_size: int | None = None) -> Profile:
    """The profile, with the site's MaxArraySize replaced when ``max_array_size`` is given."""
    prof = load_profile(profile)
    return replace(prof, max_array_size=max_array_size) if max_array_size else prof


def group_by_request(tasks: list[ArrayTask]) -> list[tuple[Resources, list[int]]]:
    """[(request, task indices)]: one entry per distinct request, in first-seen order."""
    groups: dict[str, tuple[Resources, list[int]]] = {}
    keys: dict[int, str] = {}  # a sweep's tasks share one Resources object: its key once, not per task
    for position, task in enumerate(tasks):
        key = keys.get(id(task.resources))
        if key is None:
            key = keys[id(task.resources)] = task.resources.key()
        groups.setdefault(key, (task.resources, []))[1].append(position)
    return list(groups.values())


def plan_arrays(tasks: list[ArrayTask], profile: Profile, unit_dir: Path, python=None,
                max_parallel: int | None = None) -> list[ArraySpec]:
    """The fewest arrays the tasks allow: one per distinct request, split at the site's MaxArraySize."""
    arrays: list[ArraySpec] = []
    for res, positions in group_by_request(tasks):
        for offset, count in chunks(len(positions), profile.max_array_size):
            script = render_submitit(profile, res, folder=unit_dir / "submitit", python=python, array_size=count,
                                     max_parallel=max_parallel,
                                     dependency=WAIT_FOR_PREVIOUS if arrays and max_parallel else None)
            arrays.append(ArraySpec(res, positions[offset:offset + count], offset, script))
    return arrays


def task_dirs(plan: ArrayPlan) -> list[Path]:
    width = max(3, len(str(len(plan.tasks) - 1)))
    return [plan.unit_dir / f"task-{task.index:0{width}d}" for task in plan.tasks]


def _submit_one(plan: ArrayPlan, k: int, array: ArraySpec, submitter, payloads, shared, previous):
    """(array id, job id per task of the array, its script's path)."""
    dependency = f"afterany:{previous}" if previous and plan.max_parallel else None
    what = f"sbatch failed for array {k + 1} of {len(plan.arrays)}"
    if shared is not None:
        array_id, script = executor.submitted(lambda: submitter.submit_shared(
            shared(array), array.array_indices, plan.max_parallel, dependency), what)
        return array_id, [f"{array_id}_{i}" for i in array.array_indices], script
    batch = [payloads[i] for i in array.tasks]
    jobs = executor.submitted(lambda: submitter.submit_as_array(batch, plan.max_parallel, dependency), what)
    return jobs[0].job_id.split("_")[0], [job.job_id for job in jobs], jobs[0].paths.submission_file


def submit_arrays(plan: ArrayPlan, payloads: list | None, submitters: dict,
                  shared=None, number_from: int = 0) -> tuple[list[dict], list[str]]:
    """Queue every array; returns (array entries for the record, job id per task). All or nothing.

    ``payloads``: one per task (training configs, prediction shards); or ``shared(array)``: one
    payload for each whole array (a sweep's tasks read their own overrides). Scripts are kept as
    ``submission-<number_from + k>.sbatch`` (a resubmission numbers on after the earlier arrays).
    """
    entries: list[dict] = []
    job_ids: list[str] = [""] * len(plan.tasks)
    resources: dict[str, dict] = {}
    try:
        for k, array in enumerate(plan.arrays):
            key = array.resources.key()
            array_id, ids, script = _submit_one(plan, k, array, submitters[key], payloads, shared,
                                                entries[-1]["job_id"] if entries else None)
            shutil.copyfile(script, plan.unit_dir / f"submission-{number_from + k}.sbatch")
            entries.append({"job_id": array_id, "offset": array.offset, "count": len(array.tasks),
                            "tasks": [plan.tasks[i].index for i in array.tasks],
                            "resources": resources.setdefault(key, array.resources.to_dict())})
            for i, job_id in zip(array.tasks, ids):
                job_ids[i] = job_id
    except SubmissionError:
        if entries:  # no half-submitted units: cancel what went in, then report
            with contextlib.suppress(SubmissionError):
                commands.scancel([e["job_id"] for e in entries])
        raise
    return entries, job_ids


def train_payload(task: ArrayTask, run_dir: Path) -> TrainPayload:
    return TrainPayload(to_dict(task.config), str(run_dir))


def submit_plan(plan: ArrayPlan, head: dict, python=None, payload_for=train_payload) -> JobArray:
    """Submit a planned unit and record it; ``head`` holds the record's kind-specific keys.

    ``payload_for(task, run_dir)`` makes what each task runs (default: train its config);
    scaling studies pass one that benchmarks instead. A sweep (``plan.base`` set, default
    payload) sends one payload per array instead, and its tasks make their own run directories.
    """
    if plan.kind == "sweep" and plan.base is not None and payload_for is train_payload:
        return submit_sweep(plan, head, python)
    folder = plan.unit_dir / "submitit"
    submitters = {res.key(): executor.make_executor(folder, plan.profile, res, python) for res in plan.requests}
    dirs = task_dirs(plan)
    payloads = [payload_for(t, d) for t, d in zip(plan.tasks, dirs)]
    for d in dirs:
        d.mkdir(parents=True, exist_ok=True)
    entries, job_ids = submit_arrays(plan, payloads, submitters)
    record = unit_record(plan, head, entries, job_ids, dirs)
    atomic_write_json(plan.unit_dir / records.SWEEP_FILE, record)
    common = common_keys(plan, record)
    for task, jid, task_dir in zip(plan.tasks, job_ids, dirs):
        records.write_task(task_dir, jid, task.index, task.overrides, task.label, task.resources.to_dict(), common)
    for entry in entries:
        records.register(entry["job_id"], plan.unit_dir)
    return JobArray(plan.unit_dir, record)


def common_keys(plan: ArrayPlan, record: dict | None = None) -> dict:
    """The keys sweep.json and every task's job.json share: the site, where submitit logs, the submit time."""
    folder = plan.unit_dir / "submitit"
    return {"profile": plan.profile.name, "submitit_folder": str(folder),
            "log_pattern": str(folder / executor.LOG_PATTERN),
            "submitted_at": (record or {}).get("submitted_at") or records.now_iso()}


def unit_record(plan: ArrayPlan, head: dict, entries: list[dict], job_ids: list[str], dirs: list[Path]) -> dict:
    """sweep.json: the unit, its arrays and every task (job id, run dir, overrides, request)."""
    array_of = {i: k for k, array in enumerate(plan.arrays) for i in array.tasks}
    requests = [array.resources.to_dict() for array in plan.arrays]  # a task's request is its array's
    return {"kind": plan.kind, "name": plan.name, **head, "profile_source": plan.profile.source, **common_keys(plan),
            "max_parallel": plan.max_parallel, "metric": plan.metric, "mode": plan.mode, "arrays": entries,
            "tasks": [{"index": t.index, "job_id": jid, "run_dir": d.name, "overrides": t.overrides,
                       "label": t.label, "array": array_of[i], "resources": requests[array_of[i]]}
                      for i, (t, jid, d) in enumerate(zip(plan.tasks, job_ids, dirs))]}


def submit_shared(plan: ArrayPlan, python=None, number_from: int = 0) -> tuple[list[dict], list[str]]:
    """``submit_arrays`` for a sweep: one payload per array, its tasks read their overrides from sweep.json."""
    submitter = executor.make_executor(plan.unit_dir / "submitit", plan.profile, plan.arrays[0].resources, python)
    return submit_arrays(plan, None, {a.resources.key(): submitter for a in plan.arrays}, number_from=number_from,
                         shared=lambda array: SweepPayload(str(plan.unit_dir), array.offset))


def record_submission(plan: ArrayPlan, record: dict, entries: list[dict], job_ids: list[str],
                      submitted_at: str) -> JobArray:
    """A sweep's submission into its sweep.json: each task's new job id (an earlier one moves to
    ``previous_jobs``) and array, the new arrays and the submission; written, and the arrays registered."""
    first = len(record["arrays"])
    array_of = {position: first + k for k, array in enumerate(plan.arrays) for position in array.tasks}
    by_index = {t["index"]: t for t in record["tasks"]}
    for position, (task, job_id) in enumerate(zip(plan.tasks, job_ids)):
        entry = by_index[task.index]
        if entry["job_id"]:
            entry["previous_jobs"] = entry.get("previous_jobs", []) + [entry["job_id"]]
        entry["job_id"], entry["array"] = job_id, array_of[position]
    record["arrays"] = record["arrays"] + entries
    record.setdefault("submissions", []).append({"submitted_at": submitted_at,
                                                 "arrays": [e["job_id"] for e in entries],
                                                 "tasks": [t.index for t in plan.tasks]})
    records.write_unit(plan.unit_dir, record)
    for entry in entries:
        records.register(entry["job_id"], plan.unit_dir)
    return JobArray(plan.unit_dir, record)


def submit_sweep(plan: ArrayPlan, head: dict, python=None) -> JobArray:
    """A sweep: sweep.json first (its tasks read their overrides there), one payload per array, then the ids."""
    plan.unit_dir.mkdir(parents=True, exist_ok=True)
    dirs = task_dirs(plan)
    record = unit_record(plan, head, [], [""] * len(plan.tasks), dirs)
    for entry in record["tasks"]:  # one request for all: the record's "resources", not one copy per task
        del entry["resources"]
    record["base_config"] = to_dict(plan.base)
    records.write_unit(plan.unit_dir, record)
    try:
        entries, job_ids = submit_shared(plan, python)
    except SubmissionError:  # nothing is queued: leave no record of a sweep that does not exist
        (plan.unit_dir / records.SWEEP_FILE).unlink(missing_ok=True)
        raise
    return record_submission(plan, record, entries, job_ids, record["submitted_at"])


__all__ = ["ArrayPlan", "ArraySpec", "ArrayTask", "common_keys", "group_by_request", "plan_arrays", "record_submission",
           "site_profile", "submit_arrays", "submit_plan", "submit_shared", "submit_sweep",
           "task_dirs", "train_payload", "unit_record"]
