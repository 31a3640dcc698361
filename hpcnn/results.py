"""The results schema: what ``summary.json`` holds, written by the trainer, read by everything else.

Torch-free, so the login node (``hpcnn status``, ``hpcnn results``, scaling studies) reads
results without the training stack. The trainer fills the keys in ``KEYS`` and nothing
else (a test holds it to that); readers look values up by dotted name with ``value()``,
where ``val.*`` / ``test.*`` are short for ``metrics.val.*`` / ``metrics.test.*``.

Bump ``SCHEMA_VERSION`` when a key changes meaning or disappears; adding a key does not.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from .files import atomic_write_json, read_json_dict

SCHEMA_VERSION = 1
SUMMARY_FILE = "summary.json"
FINAL_STATUSES = frozenset({"completed", "early_stopped", "pruned"})   # the run ended on its own terms
# pruned: a search stopped the trial for good; paused: a search stopped it at an ASHA rung, to resume it if it ranks

# key -> meaning. Nested mappings are described by their own dotted keys in docs/results.md.
KEYS: dict[str, str] = {
    "schema_version": "version of this layout (readers check it)",
    "hpcnn_version": "hpcnn release that wrote the file",
    "name": "experiment name (config `name`)",
    "status": "completed | early_stopped | pruned (hpcnn tune stopped the trial) | paused (hpcnn tune stopped it at a "
              "rung with a checkpoint, to resume it if it ranks among the best there) | preempted",
    "metrics": "{val: metrics of the best epoch, test: metrics of the best weights on the test split or null}",
    "best_epoch": "1-based epoch whose weights are the best (by `monitor.metric`)",
    "monitor": "{metric, best}: what early stopping and the best checkpoint watch",
    "epochs_run": "epochs completed over all phases",
    "phases": "one entry per training phase: {name, epochs_run, optimizer, trainable_parameters, frozen_parameters}",
    "wall_seconds": "wall time of the whole run, summed over requeues",
    "train_seconds": "time spent in training steps (excludes evaluation and checkpoints)",
    "images_per_second": "training throughput over all ranks (images / train_seconds)",
    "data_wait_fraction": "fraction of training time rank 0 waited for input batches",
    "skipped_files": "number of unreadable input files skipped",
    "skipped_file_list": "the first 100 of them",
    "classes": "class names, index = label",
    "world_size": "ranks (processes) that trained",
    "global_batch": "images per optimizer step over all ranks",
    "per_rank_batch": "images per optimizer step on one rank",
    "lr_base": "configured learning rate (first phase)",
    "lr_peak": "learning rate after the linear scaling rule (first phase)",
    "scale_lr": "none | linear",
    "device": "cpu, or the GPU model",
    "gpu_model": "GPU model name, or null on CPU",
    "torch": "torch version",
    "python": "Python version",
    "host": "host name of rank 0",
    "job": "{job_id, raw_job_id, nodelist, num_nodes, partition, restart_count, global_rank} of the Slurm job, "
           "or null outside Slurm",
    "weights": "{source, loaded, skipped, missing, backbone_loaded, backbone_total}: what model.weights gave the "
               "model at the start, or null (random init, or resumed from a checkpoint)",
    "gpu": "GPU telemetry summary (see docs/monitoring.md), absent without a GPU",
}


def make_summary(**fields: Any) -> dict:
    """A summary dict in schema order; unknown keys are a bug in the writer, not the reader's problem."""
    unknown = sorted(set(fields) - set(KEYS))
    if unknown:
        raise KeyError(f"not in the results schema: {', '.join(unknown)} (add them to hpcnn.results.KEYS)")
    from . import __version__

    fields = {**fields, "schema_version": SCHEMA_VERSION, "hpcnn_version": __version__}
    return {key: fields[key] for key in KEYS if key in fields}


def write_summary(run_dir: str | Path, summary: dict) -> Path:
    return atomic_write_json(Path(run_dir) / SUMMARY_FILE, summary)


def read_summary(run_dir: str | Path) -> dict | None:
    """The run's summary, or None while it has none (running, or died before the end)."""
    return read_json_dict(Path(run_dir) / SUMMARY_FILE)


def is_final(summary: dict | None) -> bool:
    return bool(summary) and summary.get("status") in FINAL_STATUSES


def _walk(node: Any, parts: list[str]) -> Any:
    for part in parts:
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    return node


def value(summary: dict | None, dotted: str) -> float | None:
    """A numeric value by dotted key (``images_per_second``, ``val.accuracy``, ``gpu.energy_j``), else None."""
    if not summary:
        return None
    parts = dotted.split(".")
    found = _walk(summary, parts)
    if found is None and parts[0] in ("val", "test"):
        found = _walk(summary.get("metrics"), parts)
    if isinstance(found, bool) or not isinstance(found, (int, float)):
        return None
    if isinstance(found, float) and math.isnan(found):
        return None
    return found


def numeric_keys(summary: dict | None, prefix: str = "") -> list[str]:
    """Every dotted key with a number, as ``value()`` accepts it (``metrics.`` dropped)."""
    out: list[str] = []
    for key, item in (summary or {}).items():
        dotted = f"{prefix}{key}"
        if isinstance(item, dict):
            out += numeric_keys(item, "" if dotted == "metrics" else f"{dotted}.")
        elif isinstance(item, (int, float)) and not isinstance(item, bool):
            out.append(dotted)
    return out


__all__ = ["FINAL_STATUSES", "KEYS", "SCHEMA_VERSION", "SUMMARY_FILE", "is_final", "make_summary", "numeric_keys",
           "read_summary", "value", "write_summary"]
