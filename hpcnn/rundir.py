"""A run directory: the one place that knows its layout and reads or writes the config it was started with.

Written by a training job (``hpcnn.run``, the Trainer), read by everything that looks at a run later:
resume, predict, export, explain, compare, lessons, ``model.weights: RUN_DIR``, results, status and
``hpcnn runs``. This module names every file (the constants below) and owns the resolved config and
the checkpoint choice; ``summary.json``'s keys and format belong to ``hpcnn.results`` (read and written
through it), the lock file's content to ``hpcnn.rundir_lock``, checkpoint contents to the Trainer.

    CONFIG_FILE      the validated config the run trains (resume reads it back)
    SUMMARY_FILE     the results, once the run ended (``hpcnn.results``)
    METRICS_FILE     one line per epoch
    PROGRESS_FILE    where training is (``hpcnn.monitor.series``)
    JOB_FILE         the Slurm job that runs it (``hpcnn.slurm.jobs.records``)
    LOCK_FILE        the job holding the directory (``hpcnn.rundir_lock``)
    CHECKPOINTS_DIR  BEST, FINAL and the resumable ckpt-e*-s*.pt files (``hpcnn.train.checkpoint``)

Torch-free: the login node reads run directories without the training stack.
"""
from __future__ import annotations

from pathlib import Path
from typing import Iterable

import yaml

from . import results
from .config.load import apply_overrides, dump_yaml, from_dict, read_yaml
from .config.schema import JobConfig
from .errors import CheckpointError, HpcnnError
from .files import atomic_write_text
from .results import read_summary, write_summary  # a run's summary.json, read and written through hpcnn.results
from .rundir_lock import LOCK_NAME

CONFIG_FILE = "config.resolved.yaml"
SUMMARY_FILE = results.SUMMARY_FILE
METRICS_FILE = "metrics.jsonl"
PROGRESS_FILE = "progress.json"
JOB_FILE = "job.json"
LOCK_FILE = LOCK_NAME
CHECKPOINTS_DIR = "checkpoints"
BEST = "best.pt"
FINAL = "model_final.pt"
CHECKPOINT_CHOICES = {"best": (BEST, FINAL), "final": (FINAL,)}  # first one present wins


def config_path(run_dir: str | Path) -> Path:
    return Path(run_dir) / CONFIG_FILE


def checkpoints_dir(run_dir: str | Path) -> Path:
    return Path(run_dir) / CHECKPOINTS_DIR


def write_config(run_dir: str | Path, cfg: JobConfig) -> Path:
    """The config a run trains, written once when it starts (atomically: resume never reads half a file)."""
    return atomic_write_text(config_path(run_dir), dump_yaml(cfg))


def config_for_resume(run_dir: str | Path, overrides: Iterable[str] = ()) -> JobConfig:
    """The config a run directory was started with, plus any overrides (e.g. more epochs)."""
    path = config_path(run_dir)
    if not path.is_file():
        raise CheckpointError(f"not a run directory (no {CONFIG_FILE})", str(run_dir),
                              "pass the directory printed at the end of a run")
    overrides = list(overrides)
    data = apply_overrides(read_yaml(path), overrides)
    return from_dict(data, str(path) + (" + command-line overrides" if overrides else ""))


def config_data(run_dir: str | Path) -> dict | None:
    """The resolved config as plain YAML data, unvalidated (compare shows any run's keys); None without one."""
    path = config_path(run_dir)
    if not path.is_file():
        return None
    try:
        data = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as err:
        raise HpcnnError(f"{CONFIG_FILE} cannot be read: {err}".splitlines()[0], str(path)) from None
    return data if isinstance(data, dict) else None


def model_name(run_dir: str | Path) -> str | None:
    """``model.name`` of a run, if its config says (never raises: a hint, not a check)."""
    try:
        return (config_data(run_dir) or {}).get("model", {}).get("name")
    except (HpcnnError, AttributeError):
        return None


def checkpoint(run_dir: str | Path, which: str = "best") -> Path | None:
    """``best``: checkpoints/best.pt, else model_final.pt; ``final``: model_final.pt; None when the run has neither."""
    folder = checkpoints_dir(run_dir)
    return next((folder / name for name in CHECKPOINT_CHOICES[which] if (folder / name).is_file()), None)


def run_of_checkpoint(weights_file: str | Path) -> Path | None:
    """The run directory a ``checkpoints/*.pt`` file belongs to, else None (a plain weights file)."""
    weights_file = Path(weights_file)
    return weights_file.parent.parent if weights_file.parent.name == CHECKPOINTS_DIR else None


__all__ = ["BEST", "CHECKPOINTS_DIR", "CHECKPOINT_CHOICES", "CONFIG_FILE", "FINAL", "JOB_FILE", "LOCK_FILE",
           "METRICS_FILE", "PROGRESS_FILE", "SUMMARY_FILE", "checkpoint", "checkpoints_dir", "config_data",
           "config_for_resume", "config_path", "model_name", "read_summary", "run_of_checkpoint", "write_config",
           "write_summary"]
