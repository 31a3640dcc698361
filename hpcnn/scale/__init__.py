"""Scaling studies: measure a job's throughput over GPUs and nodes through Slurm, and model beyond.

    from hpcnn.scale import Study
    study = Study("jobs/scaling/local_cpu.yaml")
    run = study.run()            # pre-flight, submit missing/failed points as one group, return at once
    report = study.collect()     # later, any shell: points.json/.csv, table.txt, PNGs in the study dir
    failures = [c for c in study.check() if not c["ok"]]

``study`` (the file), ``runner`` (submit), ``state`` (study.json, point states), ``points`` (records,
placement flags, efficiency), ``collect`` (the report), ``report``/``plots`` (table, CSV, PNGs),
``check`` (reference figures), ``model`` (the α-β communication model), ``payload`` (what a point's
tasks run). Torch-free: only ``BenchPayload.__call__`` on the compute nodes imports the benchmark.
"""
from __future__ import annotations

from pathlib import Path

from .check import check, check_report
from .collect import collect, read_report
from .model import (Link, Links, StepProfile, allreduce_s, binomial_allreduce_s, predict, rabenseifner_allreduce_s,
                    recursive_doubling_allreduce_s, ring_allreduce_s, tree_allreduce_s)
from .runner import StudyRun, run_study
from .state import point_states, require_state
from .study import StudySpec, load_study, study_dir, study_from_dict


class Study:
    """A study by its file (to run it) or its directory (to collect and check it from any shell)."""

    def __init__(self, study):
        if isinstance(study, StudySpec):
            self.spec, self._dir = study, None
            return
        path = Path(study)
        if path.is_dir():
            self.spec, self._dir = study_from_dict(require_state(path)["spec"], str(path / "study.json")), path
        else:
            self.spec, self._dir = load_study(path), None

    @property
    def directory(self) -> Path:
        return self._dir or study_dir(self.spec)

    def run(self, profile=None, python=None, dry_run: bool = False) -> StudyRun:
        return run_study(self.spec, profile, python, dry_run)

    def states(self) -> dict:
        return point_states(require_state(self.directory))

    def collect(self) -> dict:
        return collect(self.directory)

    def check(self) -> list[dict]:
        return check(self.directory)


__all__ = ["Link", "Links", "StepProfile", "Study", "StudyRun", "StudySpec", "allreduce_s", "binomial_allreduce_s",
           "check", "check_report", "collect", "load_study", "predict", "rabenseifner_allreduce_s", "read_report",
           "recursive_doubling_allreduce_s", "ring_allreduce_s", "run_study", "study_from_dict", "tree_allreduce_s"]
