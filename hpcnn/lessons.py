"""The course lessons (``jobs/lessons/*.yaml``) run locally, task after task, with the numbers each one is about.

A lesson is a sweep file: ``hpcnn sweep jobs/lessons/X.yaml`` sends it to Slurm as one array;
``hpcnn lessons jobs/lessons/X.yaml`` runs the same tasks here, one after the other, and
prints one line per task: validation and test accuracy, the training split's accuracy (the best
checkpoint in eval mode, so the train-val gap is measured like for like), and the epochs run; the
same rows go to RUNS_DIR/<lesson name>/lesson.json.
docs/lessons.md has each lesson's command, measured numbers and picture.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

import torch

from . import rundir
from .config import to_dict
from .files import atomic_write_text
from .results import is_final
from .slurm.jobs.sweep import expand, load_sweep
from .tables import format_table

BATCH = 256


def lesson_tasks(path, overrides=()) -> list:
    """The lesson's tasks (``SweepTask``: index, overrides, validated config), as Slurm would run them."""
    return expand(load_sweep(path), list(overrides))[1]


def config_key(cfg) -> str:
    """A hash of what a run trains: the config without its name, Slurm request, outputs and CPU thread count."""
    data = {**to_dict(cfg), "name": None, "slurm": None, "monitor": None}
    data["train"] = {k: v for k, v in data["train"].items()
                     if k not in ("plots", "tensorboard", "log_every", "threads")}
    return hashlib.sha1(json.dumps(data, sort_keys=True, default=str).encode()).hexdigest()


def find_run(runs_dir, cfg) -> Path | None:
    """A finished run of ``cfg`` under ``runs_dir`` (any depth), matched by ``config_key``; None if there is none."""
    key = config_key(cfg)
    for summary_file in sorted(Path(runs_dir).rglob(rundir.SUMMARY_FILE)):
        run_dir = summary_file.parent
        if rundir.config_path(run_dir).is_file() and is_final(rundir.read_summary(run_dir)) \
                and config_key(rundir.config_for_resume(run_dir)) == key:
            return run_dir
    return None


def run_task(task, run_dir) -> dict:
    """Train one task into ``run_dir``: a finished run of the same config there is read back, an interrupted
    one continues from its newest checkpoint."""
    from .run import run_job

    run_dir = Path(run_dir)
    summary = rundir.read_summary(run_dir)
    if summary is not None and find_run(run_dir, task.config) == run_dir:
        return summary
    return run_job(task.config, run_dir=run_dir, resume="auto").summary


@torch.no_grad()
def split_accuracy(run_dir, split: str = "train", checkpoint: str = "best") -> float:
    """Accuracy of a run's checkpoint on one of its splits, images as in evaluation (no augmentation)."""
    from .explain.report import load_run_model
    from .train.inputs import job_inputs

    cfg = rundir.config_for_resume(run_dir)
    splits, normalize = job_inputs(cfg, announce=False)
    model, _ = load_run_model(run_dir, cfg, splits.classes, checkpoint)
    data = getattr(splits, split)
    correct = 0
    for start in range(0, len(data), BATCH):
        x, y = data.__getitems__(list(range(start, min(start + BATCH, len(data)))))
        correct += int((model(normalize(x)).argmax(1) == torch.as_tensor(y)).sum())
    return correct / max(1, len(data))


def task_row(task, run_dir, summary: dict) -> dict:
    """The numbers a lesson compares, for one finished task."""
    metrics = summary["metrics"]
    val, test = metrics["val"]["accuracy"], (metrics.get("test") or {}).get("accuracy")
    train = split_accuracy(run_dir, "train")
    return {"task": task.index, "name": task.config.name, "label": task.label, "run_dir": str(run_dir),
            "train_accuracy": round(train, 4), "val_accuracy": round(val, 4),
            "test_accuracy": None if test is None else round(test, 4), "gap": round(train - val, 4),
            "epochs_run": summary.get("epochs_run"), "status": summary.get("status")}


def run_lesson(lesson, overrides=(), runs_dir="runs/lessons", only=None) -> list[dict]:
    """Train (or read back) the lesson's tasks, ``only`` these indices if given, into RUNS_DIR/<lesson name>/;
    their rows, also written to lesson.json there."""
    sweep = load_sweep(lesson)
    lesson_dir = Path(runs_dir) / sweep.name
    rows = []
    for task in expand(sweep, list(overrides))[1]:
        if only and task.index not in only:
            continue
        run_dir = lesson_dir / f"{task.index:02d}-{task.config.name}"
        rows.append(task_row(task, run_dir, run_task(task, run_dir)))
    if rows:
        atomic_write_text(lesson_dir / "lesson.json", json.dumps(rows, indent=2) + "\n")
    return rows


def format_rows(rows: list[dict]) -> str:
    """The rows as a table: task, train/val/test accuracy, gap, label."""
    table = [("task", "train", "val", "test", "gap", "label")]
    for r in rows:
        test = "-" if r["test_accuracy"] is None else f"{r['test_accuracy']:.3f}"
        table.append((r["task"], f"{r['train_accuracy']:.3f}", f"{r['val_accuracy']:.3f}", test, f"{r['gap']:.3f}",
                      r["label"]))
    return format_table(table, align="lrrrrl")
