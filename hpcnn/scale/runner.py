"""``run_study``: pre-flight a study, submit every point that is missing or failed, return at once.

All points are checked on the login node first (the study file, every point's config and
batch, the profile, the resources, data paths, that this hpcnn has ``hpcnn bench``). Points
to (re)submit go out as one mixed-resource group (``plan_group``: one Slurm array per distinct
request), each task running ``BenchPayload``. A second run submits only points without a
result whose job is no longer queued or running (or whose study entry changed); when every
point is done it collects the report instead. A lock keeps two runs from submitting twice.
"""
from __future__ import annotations

import importlib.util
from dataclasses import dataclass, field
from pathlib import Path

from ..config import to_dict
from ..errors import ConfigError
from ..files import exclusive
from ..slurm.jobs import records
from ..slurm.jobs.arrays import ArrayPlan, submit_plan
from ..slurm.jobs.groups import plan_group
from . import study as studies
from .collect import collect
from .payload import BENCH_FILE, BenchPayload
from .state import DONE, PointState, point_states, read_state, write_state
from .study import StudySpec


@dataclass
class StudyRun:
    """What one ``hpcnn scale STUDY.yaml`` did."""

    study_dir: Path
    submitted: list[str] = field(default_factory=list)   # point keys sent to Slurm now
    array_ids: list[str] = field(default_factory=list)
    unit_dir: Path | None = None
    states: dict[str, PointState] = field(default_factory=dict)  # before this run's submission
    report: dict | None = None                             # when everything was done: the collected report
    plan: ArrayPlan | None = None                          # dry runs

    @property
    def all_done(self) -> bool:
        return bool(self.states) and all(s.status == DONE for s in self.states.values())


def check_bench_available() -> None:
    """This hpcnn must have ``hpcnn.bench.run`` (found without importing it: it needs torch)."""
    spec = importlib.util.find_spec("hpcnn")
    roots = list(spec.submodule_search_locations or []) if spec else []
    if not any((Path(root) / "bench" / "run.py").is_file() for root in roots):
        raise ConfigError("this hpcnn has no benchmark module (hpcnn/bench/run.py)", "hpcnn scale",
                          "install an hpcnn with `hpcnn bench`")


def _needs_submitting(state: PointState, fingerprint: str) -> bool:
    """Neither queued nor running, and without a result for what the point measures now."""
    return not state.active and (state.status != DONE or state.attempt.get("fingerprint") != fingerprint)


def run_study(study, profile=None, python=None, dry_run: bool = False, collect_when_done: bool = True) -> StudyRun:
    """Submit the study's missing or failed points (one group, fewest arrays) and return at once.

    ``study``: a study file or a ``StudySpec``; ``profile`` overrides the study's. With everything
    done, nothing is submitted and (``collect_when_done``) the report is collected and written.
    """
    spec = study if isinstance(study, StudySpec) else studies.load_study(study)
    base = studies.base_config(spec)
    pts = studies.points(spec, base)
    sdir = studies.study_dir(spec, base)
    configs = {p.key: studies.point_config(spec, p, base, sdir / "submissions") for p in pts}
    prints = {key: studies.fingerprint(cfg, spec) for key, cfg in configs.items()}
    check_bench_available()
    site = profile or spec.profile
    with exclusive(sdir, "another `hpcnn scale` is working on this study right now"):
        state = read_state(sdir) or {"name": spec.name, "points": {}}
        states = point_states(state, [p.key for p in pts])
        todo = [p for p in pts if _needs_submitting(states[p.key], prints[p.key])]
        run = StudyRun(sdir, states=states)
        if not todo:
            if state.get("points") and not dry_run:  # reference figures or the model may have changed
                _describe(state, spec, pts, state.get("profile") or site or base.slurm.profile)
                write_state(sdir, state)
            if collect_when_done and run.all_done and not dry_run:
                run.report = collect(sdir)
            return run
        plan = plan_group([configs[p.key] for p in todo], profile=site, name=f"scale-{spec.name}", python=python,
                          metric="images_per_second", max_parallel=spec.max_parallel)
        if dry_run:
            run.plan, run.submitted = plan, [p.key for p in todo]
            return run
        bench = spec.bench

        def payload(task, run_dir: Path) -> BenchPayload:
            return BenchPayload(to_dict(task.config), str(run_dir / BENCH_FILE), bench.data, bench.warmup,
                                bench.steps, bench.windows)

        group = submit_plan(plan, {"study_dir": str(sdir)}, python, payload_for=payload)
        _record(state, spec, pts, todo, group, prints, plan.profile.name)
        write_state(sdir, state)
        run.submitted, run.array_ids, run.unit_dir = [p.key for p in todo], group.array_ids, group.sweep_dir
        return run


def _describe(state: dict, spec: StudySpec, pts, profile_name: str) -> None:
    """The study as the user last ran it: spec, points in order with their batch."""
    state.update({"name": spec.name, "source": spec.source, "spec": studies.to_data(spec), "profile": profile_name,
                  "order": [p.key for p in pts], "updated_at": records.now_iso()})
    entries = state.setdefault("points", {})
    for p in pts:
        entry = entries.setdefault(p.key, {"attempts": []})
        entry.update({"key": p.key, "label": p.label, "nodes": p.nodes, "per_node": p.per_node, "gpus": p.gpus,
                      "ranks": p.ranks, "batch_per_rank": p.batch_per_rank, "global_batch": p.global_batch})


def _record(state: dict, spec: StudySpec, pts, todo, group, prints: dict, profile_name: str) -> None:
    """The study as submitted now, and one new attempt per submitted point."""
    _describe(state, spec, pts, profile_name)
    for point, task in zip(todo, group.record["tasks"]):
        state["points"][point.key]["attempts"].append({
            "job_id": task["job_id"], "array_job_id": task["job_id"].split("_")[0],
            "unit_dir": str(group.sweep_dir), "run_dir": str(group.sweep_dir / task["run_dir"]),
            "log_pattern": group.record["log_pattern"], "fingerprint": prints[point.key],
            "submitted_at": records.now_iso()})


__all__ = ["StudyRun", "check_bench_available", "run_study"]
