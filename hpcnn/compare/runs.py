"""The runs to compare, from run directories and sweep directories, with what each has on disk.

A run directory (``hpcnn.rundir``) has its resolved config (written when training starts), ``metrics.jsonl``
(one line per epoch) and, once it ended, ``summary.json``. A sweep directory (``sweep.json``)
stands for its task directories; a task that has not started, is still running or failed is
listed with its state (from Slurm when ``sacct`` answers, else from the disk), never fatal.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from itertools import chain
from pathlib import Path
from typing import Any

from .. import results, rundir
from ..errors import HpcnnError
from ..monitor.series import read_metrics
from ..rundir import CONFIG_FILE, METRICS_FILE

SWEEP_FILE = "sweep.json"
SEARCH_FILE = "search.json"  # hpcnn.tune.spec.RECORD (compare sits below tune: the name, not the import)
RUN_MARKERS = (CONFIG_FILE, METRICS_FILE, rundir.SUMMARY_FILE, rundir.JOB_FILE)


@dataclass
class Run:
    """One run as found on disk; ``label`` says what sets it apart (filled by ``collect``)."""

    path: Path
    config: dict | None
    history: list[dict]
    summary: dict | None
    state: str                 # completed | early_stopped | preempted | running | not started | FAILED ...
    reason: str = ""           # why a task failed or has no results yet
    fallback_label: str = ""   # a sweep task's overrides, for tasks without a config yet
    label: str = ""

    @property
    def name(self) -> str:
        return self.path.name or self.path.resolve().name  # "." names the directory it is


def load_run(run_dir: Path, slurm_state: str | None = None, reason: str = "", fallback_label: str = "") -> Run:
    summary = rundir.read_summary(run_dir)
    config = rundir.config_data(run_dir)
    history = [r for r in read_metrics(run_dir) if isinstance(r, dict)]  # a half-written line is passed over
    if summary and summary.get("status"):
        state = str(summary["status"])
    else:  # "running", or died without a summary: only the scheduler knows
        state = "running" if history or config else "not started"
    if slurm_state and not results.is_final(summary) and slurm_state not in ("COMPLETED", "UNKNOWN"):
        state = slurm_state  # PENDING, RUNNING, FAILED, TIMEOUT, ...: the scheduler knows better than the disk
    if not history and not reason and state not in ("running", "PENDING", "RUNNING", "not started"):
        reason = "no metrics.jsonl lines"
    return Run(run_dir, config, history, summary, state, reason, fallback_label)


def sweep_runs(sweep_dir: Path) -> list[Run]:
    from ..slurm.jobs.handles import JobArray

    try:
        record = json.loads((sweep_dir / SWEEP_FILE).read_text())
        tasks = record["tasks"]
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise HpcnnError(f"{SWEEP_FILE} cannot be read: {err}", str(sweep_dir)) from None
    try:  # task index -> TaskStatus from one sacct query
        states = {s.index: s for s in JobArray(sweep_dir, record).statuses()}
    except (HpcnnError, OSError):  # Slurm cannot be asked (a laptop): the disk says
        states = {}
    runs = []
    for task in tasks:
        status = states.get(task.get("index"))
        label = task.get("label") or " ".join(task.get("overrides") or []) or "(base)"
        runs.append(load_run(sweep_dir / task["run_dir"], status.state if status else None,
                             status.reason if status else "", label))
    return runs


def expand(path: str | Path) -> list[Run]:
    """A run directory -> [its run]; a sweep directory -> its tasks; anything else is an error."""
    path = Path(path)
    if not path.is_dir():
        raise HpcnnError("no such directory", str(path), "pass run directories or a sweep directory")
    if (path / SWEEP_FILE).is_file():
        return sweep_runs(path)
    if (path / SEARCH_FILE).is_file():  # an `hpcnn tune` search: its trials' run directories (pruned ones say so)
        return [load_run(d) for d in sorted((path / "trials").glob("trial-*")) if d.is_dir()]
    if any((path / marker).is_file() for marker in RUN_MARKERS):
        return [load_run(path)]
    raise HpcnnError(f"not a run or sweep directory (no {CONFIG_FILE}, {METRICS_FILE} or {SWEEP_FILE})", str(path),
                     "pass what `hpcnn train` / `hpcnn submit` made (runs/NAME-...) or `hpcnn sweep` made "
                     "(runs/sweep-NAME-...)")


def curve(history: list[dict], dotted: str) -> tuple[list[int], list[float]]:
    """(1-based epochs, values) of a dotted key of the metrics.jsonl records (val.accuracy, train.loss)."""
    epochs, values = [], []
    for i, record in enumerate(history):
        node: Any = record
        for part in dotted.split("."):
            node = node.get(part) if isinstance(node, dict) else None
        if isinstance(node, (int, float)) and not isinstance(node, bool) and node == node:
            epochs.append(int(record.get("epoch", i)) + 1)
            values.append(float(node))
    return epochs, values


def monitored_metric(runs: list[Run]) -> str:
    """What the runs monitored (summary's monitor.metric, else the config's early-stopping metric)."""
    monitored = (((run.summary or {}).get("monitor") or {}).get("metric") for run in runs)
    stopping = ((((run.config or {}).get("train") or {}).get("early_stopping") or {}).get("metric") for run in runs)
    return str(next(filter(None, chain(monitored, stopping)), "val.accuracy"))


def collect(paths: list[str | Path]) -> tuple[list[Run], list[str]]:
    """(every run named, sweeps expanded, labelled by what differs; the differing config keys).

    An error when no run has metrics yet: there would be nothing to draw.
    """
    from .diff import describe, differing_keys

    runs = [run for path in paths for run in expand(path)]
    if not any(run.history for run in runs):
        raise HpcnnError("none of these runs has metrics yet (metrics.jsonl is empty or missing)",
                         ", ".join(str(p) for p in paths),
                         "compare runs that finished at least one epoch; `hpcnn status` shows where they are")
    keys = differing_keys([run.config for run in runs])
    for run in runs:
        run.label = (describe(run.config, keys) if run.config is not None and keys else "") \
            or run.fallback_label or run.name
    labels = [run.label for run in runs]
    for run in runs:
        if labels.count(run.label) > 1 and run.label != run.name:  # same settings twice: say which is which
            run.label = f"{run.label} ({run.name})"
    return runs, keys


__all__ = ["Run", "collect", "curve", "expand", "load_run", "monitored_metric", "sweep_runs"]
