"""Trained runs shared by the lesson and job-accuracy tests: each distinct config trains once per session.

``trained(cfg)`` keys on what the config trains (``hpcnn.lessons.config_key``: all but its name and
Slurm request), so test_lessons.py and test_jobs_accuracy.py asking for the same lesson task (e.g. the
shortcut model) get the same run directory. With ``HPCNN_LESSON_RUNS=DIR`` the runs are kept in DIR and
reused by later sessions (and ``scripts/lesson_pictures.py --runs DIR`` draws the docs' pictures from
them); otherwise they live in a temporary folder removed at exit. A kept run is reused only by the same
code: its directory name carries a digest of the hpcnn package's files (``code_digest``), so a changed
trainer, loss or data pipeline trains afresh instead of passing on a stale run.
"""
from __future__ import annotations

import atexit
import functools
import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path

import hpcnn
from hpcnn.config import load_job
from hpcnn.lessons import config_key, lesson_tasks
from hpcnn.run import run_job

QUIET = ["train.plots=false", "train.tensorboard=false", "train.threads=1"]  # no output files; one thread: no
# oversubscribed cores when the machine is shared (config_key ignores all three)
_ROOT: Path | None = None
_RUNS: dict[str, tuple[Path, dict]] = {}


def _root() -> Path:
    global _ROOT
    if _ROOT is None and os.environ.get("HPCNN_LESSON_RUNS"):
        _ROOT = Path(os.environ["HPCNN_LESSON_RUNS"])
        _ROOT.mkdir(parents=True, exist_ok=True)
    elif _ROOT is None:
        _ROOT = Path(tempfile.mkdtemp(prefix="hpcnn-lesson-runs-"))
        atexit.register(shutil.rmtree, _ROOT, True)
    return _ROOT


PACKAGE = Path(hpcnn.__file__).parent
FINISHED = ("completed", "early_stopped")


@functools.lru_cache(maxsize=None)
def code_digest(package: Path = PACKAGE) -> str:
    """sha1 over every file of the package (relative path and bytes; byte code excluded): the code a run ran."""
    h = hashlib.sha1()
    for path in sorted(p for p in package.rglob("*") if p.is_file() and "__pycache__" not in p.parts):
        h.update(path.relative_to(package).as_posix().encode() + b"\0")
        h.update(hashlib.sha1(path.read_bytes()).digest())
    return h.hexdigest()


def run_key(cfg, code: str | None = None) -> str:
    """What a kept run is looked up by: the config's key and the code's digest."""
    return f"{config_key(cfg)[:12]}-{(code or code_digest())[:12]}"


def finished_run(root: Path, cfg, code: str | None = None) -> tuple[Path, dict] | None:
    """A finished run of ``cfg`` by this code under ``root``, with its summary; None if there is none."""
    for summary in sorted(Path(root).glob(f"{run_key(cfg, code)}-*/summary.json")):
        data = json.loads(summary.read_text())
        if data.get("status") in FINISHED:
            return summary.parent, data
    return None


def trained(cfg) -> tuple[Path, dict]:
    """(run directory, summary) of ``cfg``, trained on first use."""
    key = run_key(cfg)
    if key not in _RUNS:
        done = finished_run(_root(), cfg)
        if done:
            _RUNS[key] = done
        else:
            run_dir = _root() / f"{key}-{cfg.name}"
            shutil.rmtree(run_dir, ignore_errors=True)  # an unfinished run of an earlier session
            _RUNS[key] = (run_dir, run_job(cfg, run_dir=run_dir).summary)
    return _RUNS[key]


def is_sweep(path) -> bool:
    from hpcnn.config import read_yaml

    data = read_yaml(path)
    return "grid" in data or "runs" in data


def job_configs(path, overrides=()) -> list:
    """[(label, config)]: a job file's one config, or every task of a sweep file, with ``overrides`` + QUIET."""
    overrides = [*overrides, *QUIET]
    if is_sweep(path):
        return [(task.label, task.config) for task in lesson_tasks(path, overrides)]
    return [("(job)", load_job(str(path), overrides))]


def lesson_runs(path, overrides=()) -> dict[str, tuple[Path, dict]]:
    """{task config name: (run directory, summary)} for every task of a lesson."""
    return {cfg.name: trained(cfg) for _, cfg in job_configs(path, overrides)}
