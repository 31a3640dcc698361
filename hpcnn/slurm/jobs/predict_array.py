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
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

from ...errors import ConfigError, HpcnnError, SubmissionError
from ...files import atomic_write_json, safe_name
from ...predict import manifest, outputs
from ...predict.listing import list_inputs
from ...rundir import SUMMARY_FILE, read_summary
from ..site import commands
from ..site.commands import ACTIVE
from ..site.preflight import check_site
from ..site.profiles import Profile, site_default_profile
from ..site.resources import resolve
from . import executor, records
from .arrays import ArrayPlan, ArrayTask, common_keys, plan_arrays, site_profile, submit_arrays, unit_record
from .handles import JobArray
from .payload import Resubmitted
from .submission import job_config

KIND = "predict"


@dataclass
class PredictPayload(Resubmitted):
    """What one array task runs: predict shard ``index`` of the prediction in ``shards_dir``.

    Run again after a timeout, it rewrites its shard whole, atomically."""

    shards_dir: str
    index: int

    def __call__(self) -> dict[str, Any]:
        from ...predict.task import run_shard  # lazily: the login node may not have torch

        return run_shard(self.shards_dir, self.index)


class PredictArray(JobArray):
    """A sharded prediction: its Slurm arrays, one task per shard, and the merge of their outputs."""

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
        return manifest.read_spec(self.sweep_dir)

    def missing(self) -> list[int]:
        """Shards without output (failed, cancelled, queued or running)."""
        return manifest.missing_shards(self.sweep_dir, len(self.tasks))

    def explain(self, shards: list[int]) -> str:
        """Why these shards have no output, from one Slurm query: 'shard 1 FAILED: ...; shard 2 RUNNING'."""
        try:
            statuses = self.statuses()
        except SubmissionError as err:
            return f"Slurm not asked: {err.what}"
        shown = [(i, statuses[i]) for i in shards[:10]]
        return "; ".join(f"shard {i} {s.state}" + (f": {s.reason}" if s.reason and s.finished else "")
                         for i, s in shown)

    def collect(self, out: str | Path | None = None) -> dict:
        """Merge the shards in input order into ``out`` (default: the submitted --out); names missing ones."""
        return manifest.collect(self.sweep_dir, out, self.explain)

    def resubmit(self, python=None) -> "PredictArray":
        """Submit the shards that have no output and are not queued or running (the stored request)."""
        return submit_missing(self.sweep_dir, python=python)


def _request(profile: Profile, resources: dict, name: str):
    res = resolve(job_config(None, slurm=resources, where="predict resources"), profile, f"predict-{name}")
    if res.nodes != 1 or res.tasks_per_node != 1 or res.gpus_per_node > 1:
        raise ConfigError(f"a prediction shard is one process on one node with at most one GPU, got {res.nodes} "
                          f"node(s), {res.tasks_per_node} task(s), {res.gpus_per_node} GPU(s)", "predict resources",
                          "use more --shards instead")
    return res


def prepare(run_dir, inputs: Iterable[str], out, shards: int, profile, max_parallel: int | None = None,
            resources: dict | None = None, options: dict | None = None, checkpoint: str = "best", topk: int = 3,
            max_array_size: int | None = None) -> Path:
    """List the inputs into FILE.shards/, pre-flight, write predict.json; returns the directory.

    An existing directory of the same prediction is kept (its finished shards count); one of a
    different prediction is an error rather than something to overwrite.
    """
    out = Path(out).expanduser().absolute()
    outputs.check_output(out)
    run_dir = Path(run_dir).expanduser().absolute()
    manifest.checkpoint_path(run_dir, checkpoint)
    classes = (read_summary(run_dir) or {}).get("classes") or []
    directory = manifest.shards_dir_for(out)
    chosen = str(profile) if profile is not None else site_default_profile()  # stored: resubmits use the same
    spec_slurm = {"profile": chosen, "resources": dict(resources or {}),
                  "max_parallel": max_parallel, "max_array_size": max_array_size}
    prof = site_profile(chosen, max_array_size)
    res = _request(prof, spec_slurm["resources"], safe_name(out.stem, 40))
    check_site([(None, res)], prof, shards, max_parallel, directory, "the --out directory")
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
        old.update(slurm=spec_slurm, options=spec["options"])  # this submission's request, throttle and options
        spec = old
    else:
        os.replace(directory / new, directory / manifest.MANIFEST_FILE)
    manifest.write_spec(directory, spec)
    return directory


def _active_shards(directory: Path, record: dict | None) -> set[int]:
    """Shards whose latest job is still queued or running (one Slurm query)."""
    if not record:
        return set()
    states = commands.query_states(JobArray(directory, record).array_ids)
    active = {job_id for job_id, state in states.items() if state.state in ACTIVE}
    return {t["index"] for t in record["tasks"] if t["job_id"] in active}


def submit_missing(shards_dir, python=None) -> PredictArray:
    """Submit every shard that has no output and no live job, as one array (split at MaxArraySize)."""
    directory = Path(shards_dir)
    spec = manifest.read_spec(directory)
    record_path = directory / records.SWEEP_FILE
    record = records.read_json(record_path) if record_path.is_file() else None
    n = int(spec["shards"])
    missing = manifest.missing_shards(directory, n)
    active = _active_shards(directory, record) if missing else set()  # one Slurm query, not one per shard
    todo = [i for i in missing if i not in active]
    if not todo:
        if record is None:
            raise HpcnnError("every shard already has output: nothing to submit", str(directory),
                             f"merge them with `hpcnn predict --collect {directory}`")
        return PredictArray(directory, record, [])
    prof = site_profile(spec["slurm"]["profile"], spec["slurm"].get("max_array_size"))
    res = _request(prof, spec["slurm"]["resources"], spec["name"])
    max_parallel = spec["slurm"].get("max_parallel")
    tasks = []
    for i in todo:
        lo, hi = manifest.bounds(int(spec["inputs"]), n, i)
        tasks.append(ArrayTask(i, None, res, [], f"shard {i}: inputs {lo}-{hi - 1}"))
    arrays = plan_arrays(tasks, prof, directory, python, max_parallel)
    plan = ArrayPlan(KIND, spec["name"], prof, directory, tasks, arrays, max_parallel, "images_per_second", "max")
    for i in todo:  # a stale summary of a shard whose rows are gone must not read as done
        manifest.shard_dir(directory, i).mkdir(parents=True, exist_ok=True)
        (manifest.shard_dir(directory, i) / SUMMARY_FILE).unlink(missing_ok=True)
    submitters = {res.key(): executor.make_executor(directory / "submitit", prof, res, python)}
    entries, job_ids = submit_arrays(plan, [PredictPayload(str(directory), i) for i in todo], submitters)
    record = _record(spec, record, plan, entries, job_ids)
    return PredictArray(directory, record, todo)


def _record(spec: dict, old: dict | None, plan: ArrayPlan, entries: list[dict], job_ids: list[str]) -> dict:
    """sweep.json of kind "predict": every array ever submitted, each shard's latest job."""
    old = old or {}
    earlier = old.get("arrays", [])
    shards = [manifest.shard_dir(plan.unit_dir, t.index) for t in plan.tasks]
    record = unit_record(plan, {"out": spec["out"], "run_dir": spec["run_dir"]}, earlier + entries, job_ids, shards)
    common = common_keys(plan, record)
    tasks = {t["index"]: t for t in old.get("tasks", [])}
    for entry, shard in zip(record.pop("tasks"), shards):
        entry["array"] += len(earlier)  # numbered after the arrays of earlier submissions
        tasks[entry["index"]] = entry
        records.write_task(shard, entry["job_id"], entry["index"], [], entry["label"], entry["resources"], common)
    submission = {"submitted_at": record["submitted_at"], "arrays": [e["job_id"] for e in entries],
                  "shards": [t.index for t in plan.tasks]}
    record.update(submissions=old.get("submissions", []) + [submission], tasks=[tasks[i] for i in sorted(tasks)])
    atomic_write_json(plan.unit_dir / records.SWEEP_FILE, record)
    for entry in entries:
        records.register(entry["job_id"], plan.unit_dir)
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
