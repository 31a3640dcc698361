"""``hpcnn predict ... --profile SITE --shards N``: one Slurm array, one contiguous shard per task.

The login node lists the inputs once into ``FILE.shards/manifest.jsonl``, pre-flights (the run
has the checkpoint, there are inputs, the request fits the profile, the output is writable) and
submits the shards through the array submission sweeps use (``arrays.submit_arrays``: %K
throttle, split at MaxArraySize), then returns. Each task writes ``shard-NNNNN/rows.csv``
atomically; ``PredictArray.collect`` (``hpcnn predict --collect DIR``) merges them in input order.
Submitting the same prediction again (same run, checkpoint, inputs, shards) submits only the
shards that have no output and are not queued or running — so a failed or cancelled shard is
rerun by repeating the command (or ``hpcnn predict --resubmit DIR``).

The directory is also a ``sweep.json`` unit of kind "predict": ``hpcnn status JOBID|DIR``,
``hpcnn results DIR`` (ranked by images/s) and ``hpcnn logs`` follow it. Torch-free: the
payload imports the predictor only when a task runs it.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Iterable

from ...errors import ConfigError, HpcnnError, SubmissionError
from ...files import atomic_write_json, safe_name
from ...rundir import SUMMARY_FILE
from ..site import commands
from ..site.commands import ACTIVE
from ..site.preflight import check_array, check_placeholders, check_python, check_setup, check_writable
from ..site.profiles import Profile, load_profile, site_default_profile
from ..site.resources import check_fits, resolve
from . import executor, records
from .arrays import ArrayPlan, ArrayTask, plan_arrays, submit_arrays
from .handles import JobArray
from .submission import job_config

KIND = "predict"


@dataclass
class PredictPayload:
    """What one array task runs: predict shard ``index`` of the prediction in ``shards_dir``."""

    shards_dir: str
    index: int

    def __call__(self) -> dict[str, Any]:
        from ...predict.task import run_shard  # lazily: the login node may not have torch

        return run_shard(self.shards_dir, self.index)

    def checkpoint(self, *args: Any, **kwargs: Any):
        """submitit's timeout hook: run the shard again (it is rewritten whole, atomically)."""
        from submitit.core.utils import DelayedSubmission

        return DelayedSubmission(PredictPayload(self.shards_dir, self.index))


class PredictArray(JobArray):
    """A sharded prediction: its Slurm arrays, one task per shard, and the merge of their outputs."""

    submitted: list[int]

    def __init__(self, shards_dir: str | Path, record: dict, submitted: list[int] | None = None):
        super().__init__(shards_dir, record)
        self.submitted = list(submitted or [])

    @classmethod
    def from_dir(cls, shards_dir: str | Path) -> "PredictArray":
        record = records.read_json(Path(shards_dir) / records.SWEEP_FILE)
        if record.get("kind") != KIND:
            raise HpcnnError("not a sharded prediction (sweep.json is of a sweep or group)", str(shards_dir))
        return cls(shards_dir, record)

    @property
    def spec(self) -> dict:
        from ...predict import manifest

        return manifest.read_spec(self.sweep_dir)

    def missing(self) -> list[int]:
        """Shards without output (failed, cancelled, queued or running)."""
        from ...predict import manifest

        return manifest.missing_shards(self.sweep_dir, len(self.tasks))

    def explain(self, shards: list[int]) -> str:
        """Why these shards have no output, from one Slurm query: 'shard 1 FAILED: ...; shard 2 RUNNING'."""
        try:
            statuses = self.statuses()
        except SubmissionError as err:
            return f"Slurm not asked: {err.what}"
        parts = []
        for i in shards[:10]:
            s = statuses[i]
            parts.append(f"shard {i} {s.state}" + (f": {s.reason}" if s.reason and s.finished else ""))
        return "; ".join(parts)

    def collect(self, out: str | Path | None = None) -> dict:
        """Merge the shards in input order into ``out`` (default: the submitted --out); names missing ones."""
        from ...predict import manifest

        return manifest.collect(self.sweep_dir, out, self.explain)

    def resubmit(self, python=None) -> "PredictArray":
        """Submit the shards that have no output and are not queued or running (the stored request)."""
        return submit_missing(self.sweep_dir, python=python)


def _request(profile: Profile, resources: dict, name: str):
    cfg = job_config(None, slurm=resources, where="predict resources")
    res = resolve(cfg, profile)
    if res.nodes != 1 or res.tasks_per_node != 1 or res.gpus_per_node > 1:
        raise ConfigError(f"a prediction shard is one process on one node with at most one GPU, got {res.nodes} "
                          f"node(s), {res.tasks_per_node} task(s), {res.gpus_per_node} GPU(s)", "predict resources",
                          "use more --shards instead")
    return replace(res, job_name=cfg.slurm.job_name or f"hpcnn-predict-{name}")


def _site(spec: dict) -> Profile:
    prof = load_profile(spec["slurm"]["profile"])
    size = spec["slurm"].get("max_array_size")
    return replace(prof, max_array_size=size) if size else prof


def prepare(run_dir, inputs: Iterable[str], out, shards: int, profile, max_parallel: int | None = None,
            resources: dict | None = None, options: dict | None = None, checkpoint: str = "best", topk: int = 3,
            max_array_size: int | None = None) -> Path:
    """List the inputs into FILE.shards/, pre-flight, write predict.json; returns the directory.

    An existing directory of the same prediction is kept (its finished shards count); one of a
    different prediction is an error rather than something to overwrite.
    """
    from ...predict import manifest, outputs
    from ...predict.listing import list_inputs
    from ...rundir import read_summary

    out = Path(out).expanduser().absolute()
    outputs.check_output(out)
    run_dir = Path(run_dir).expanduser().absolute()
    manifest.checkpoint_path(run_dir, checkpoint)
    classes = (read_summary(run_dir) or {}).get("classes") or []
    directory = manifest.shards_dir_for(out)
    chosen = str(profile) if profile is not None else site_default_profile()  # stored: resubmits use the same
    spec_slurm = {"profile": chosen, "resources": dict(resources or {}),
                  "max_parallel": max_parallel, "max_array_size": max_array_size}
    prof = _site({"slurm": spec_slurm})
    res = _request(prof, spec_slurm["resources"], safe_name(out.stem, 40))
    check_fits(res, prof)
    check_placeholders(res, prof)
    check_array(shards, max_parallel)
    check_setup(prof)
    check_python(prof)
    check_writable(directory, "the --out directory")
    new = ".manifest.new.jsonl"
    count = manifest.write_manifest(directory, list_inputs(inputs), new)
    try:
        manifest.check_shards(shards, count)
    except HpcnnError:
        (directory / new).unlink(missing_ok=True)
        raise
    spec = {"kind": KIND, "name": safe_name(out.stem, 40), "run_dir": str(run_dir), "checkpoint": checkpoint,
            "out": str(out), "inputs": count, "shards": shards, "k": min(topk, len(classes)) if classes else topk,
            "manifest_sha256": manifest.manifest_digest(directory, new), "cwd": os.getcwd(),
            "options": {"batch_size": 256, "num_workers": 0, "device": "auto", "precision": "fp32",
                        "channels_last": False, "compile": False, "log_every_s": 30.0, **(options or {})},
            "slurm": spec_slurm, "created_at": records.now_iso()}
    if (directory / manifest.SPEC_FILE).is_file():
        old = manifest.read_spec(directory)
        differs = manifest.same_prediction(old, spec)
        (directory / new).unlink(missing_ok=True)
        if differs:
            raise ConfigError(f"{directory} holds a different prediction ({differs})", str(directory),
                              "choose another --out, or delete that directory to start over")
        old["slurm"] = spec_slurm  # this submission's request and throttle
        old["options"] = spec["options"]
        manifest.write_spec(directory, old)
        return directory
    os.replace(directory / new, directory / manifest.MANIFEST_FILE)
    manifest.write_spec(directory, spec)
    return directory


def _active_shards(directory: Path, record: dict | None) -> set[int]:
    """Shards whose latest job is still queued or running (one Slurm query)."""
    if not record:
        return set()
    handle = JobArray(directory, record)
    states = commands.query_states(handle.array_ids)
    return {t["index"] for t in record["tasks"] if t["job_id"] and
            (states.get(t["job_id"]) and states[t["job_id"]].state in ACTIVE)}


def submit_missing(shards_dir, python=None) -> PredictArray:
    """Submit every shard that has no output and no live job, as one array (split at MaxArraySize)."""
    from ...predict import manifest

    directory = Path(shards_dir)
    spec = manifest.read_spec(directory)
    record_path = directory / records.SWEEP_FILE
    record = records.read_json(record_path) if record_path.is_file() else None
    n = int(spec["shards"])
    todo = [i for i in manifest.missing_shards(directory, n) if i not in _active_shards(directory, record)]
    if not todo:
        if record is None:
            raise HpcnnError("every shard already has output: nothing to submit", str(directory),
                             f"merge them with `hpcnn predict --collect {directory}`")
        return PredictArray(directory, record, [])
    prof = _site(spec)
    res = _request(prof, spec["slurm"]["resources"], spec["name"])
    max_parallel = spec["slurm"].get("max_parallel")
    tasks = []
    for i in todo:
        lo, hi = manifest.bounds(int(spec["inputs"]), n, i)
        tasks.append(ArrayTask(i, None, res, [], f"shard {i}: inputs {lo}-{hi - 1}"))
    plan = ArrayPlan(KIND, spec["name"], prof, directory, tasks, plan_arrays(tasks, prof, directory, python,
                                                                             max_parallel),
                     max_parallel, metric="images_per_second", mode="max")
    for i in todo:  # a stale summary of a shard whose rows are gone must not read as done
        manifest.shard_dir(directory, i).mkdir(parents=True, exist_ok=True)
        (manifest.shard_dir(directory, i) / SUMMARY_FILE).unlink(missing_ok=True)
    submitters = {res.key(): executor.make_executor(directory / "submitit", prof, res, python)}
    entries, job_ids = submit_arrays(plan, [PredictPayload(str(directory), i) for i in todo], submitters)
    record = _record(directory, spec, record, plan, entries, job_ids, todo)
    return PredictArray(directory, record, todo)


def _record(directory: Path, spec: dict, old: dict | None, plan: ArrayPlan, entries: list[dict],
            job_ids: list[str], todo: list[int]) -> dict:
    """sweep.json of kind "predict": every array ever submitted, each shard's latest job."""
    from ...predict.manifest import shard_dir

    folder = directory / "submitit"
    common = {"profile": plan.profile.name, "submitit_folder": str(folder),
              "log_pattern": str(folder / executor.LOG_PATTERN), "submitted_at": records.now_iso()}
    arrays = list((old or {}).get("arrays", []))
    first = len(arrays)
    arrays += entries
    res = plan.tasks[0].resources.to_dict()
    tasks = {t["index"]: t for t in (old or {}).get("tasks", [])}
    array_of = {i: first + k for k, array in enumerate(plan.arrays) for i in array.tasks}
    for position, (task, jid) in enumerate(zip(plan.tasks, job_ids)):
        tasks[task.index] = {"index": task.index, "job_id": jid, "run_dir": shard_dir(directory, task.index).name,
                             "overrides": [], "label": task.label, "array": array_of[position], "resources": res}
        atomic_write_json(shard_dir(directory, task.index) / records.JOB_FILE, {
            "kind": "array-task", "job_id": jid, "array_job_id": jid.split("_")[0], "sweep_dir": str(directory),
            "sweep_index": task.index, "overrides": [], "label": task.label, "resources": res,
            "run_dir": str(shard_dir(directory, task.index)), **common})
    submissions = list((old or {}).get("submissions", []))
    submissions.append({"submitted_at": common["submitted_at"], "arrays": [e["job_id"] for e in entries],
                        "shards": list(todo)})
    record = {"kind": KIND, "name": spec["name"], "out": spec["out"], "run_dir": spec["run_dir"],
              "profile_source": plan.profile.source, **common, "max_parallel": plan.max_parallel,
              "metric": "images_per_second", "mode": "max", "arrays": arrays, "submissions": submissions,
              "tasks": [tasks[i] for i in sorted(tasks)]}
    atomic_write_json(directory / records.SWEEP_FILE, record)
    for entry in entries:
        records.register(entry["job_id"], directory)
    return record


def submit_predict(run_dir, inputs: Iterable[str], out, shards: int, profile=None, max_parallel: int | None = None,
                   resources: dict | None = None, checkpoint: str = "best", topk: int = 3,
                   options: dict | None = None, python=None, max_array_size: int | None = None) -> PredictArray:
    """Predict ``inputs`` with the run as one Slurm array of ``shards`` tasks; returns at once.

        preds = submit_predict("runs/galaxy-123", ["/survey/night-42"], "night-42.csv", shards=64,
                               profile="mysite", max_parallel=16, resources={"gpus_per_node": 1})
        preds.wait(); preds.collect()        # or, in any later shell: hpcnn predict --collect night-42.csv.shards

    ``options``: batch_size, num_workers, device, precision ("fp32"|"bf16"), channels_last, compile,
    log_every_s. Calling it again for the same prediction submits only the shards without output.
    """
    directory = prepare(run_dir, inputs, out, shards, profile, max_parallel, resources, options, checkpoint, topk,
                        max_array_size)
    return submit_missing(directory, python)


__all__ = ["PredictArray", "PredictPayload", "prepare", "submit_missing", "submit_predict"]
