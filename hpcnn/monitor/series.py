"""The files monitoring keeps in a run directory, and reading them back from any node.

- ``gpu/rank<R>.jsonl``: one JSON row per GPU per sample (fields: ``hpcnn.monitor.fields``),
  written by each rank's sampler; the run directory is on a shared file system, so rank 0
  (and ``hpcnn report`` later) sees every node's series.
- ``progress.json``: where the job is now (stage, phase, epoch, step), kept by rank 0 and
  rewritten atomically at most every few seconds, for ``hpcnn top`` on the login node.
"""
from __future__ import annotations

import contextlib
import json
import time
from pathlib import Path

from ..files import atomic_write_json, read_json_dict
from ..rundir import METRICS_FILE, PROGRESS_FILE

SERIES_GLOB = "gpu/rank*.jsonl"


def _json_lines(path: Path) -> list:
    """The JSON value of each line of a file; [] when it cannot be read, and lines that do not parse
    (a half-written last line: the job is still running) are skipped."""
    try:
        lines = Path(path).read_text().splitlines()
    except OSError:
        return []
    out = []
    for line in lines:
        with contextlib.suppress(ValueError):
            out.append(json.loads(line))
    return out


def read_rows(path: Path) -> list[dict]:
    """Rows of one series file; a half-written last line (the job is still running) is skipped."""
    return [row for row in _json_lines(path) if isinstance(row, dict) and "time" in row and "gpu" in row]


def read_series(run_dir: Path) -> dict[tuple[str, int], list[dict]]:
    """Every GPU's rows over all ranks' files, keyed by (host, gpu index), sorted by time."""
    per_gpu: dict[tuple[str, int], list[dict]] = {}
    for path in sorted(Path(run_dir).glob(SERIES_GLOB)):
        for row in read_rows(path):
            per_gpu.setdefault((str(row.get("host", "?")), int(row["gpu"])), []).append(row)
    for rows in per_gpu.values():
        rows.sort(key=lambda r: r["time"])
    return dict(sorted(per_gpu.items()))


def latest_rows(run_dir: Path) -> list[dict]:
    """The newest row of every GPU in the run's series (what `hpcnn top` falls back to)."""
    return [rows[-1] for rows in read_series(run_dir).values() if rows]


def epoch_data_wait(records: list[dict]) -> dict[int, float]:
    """{epoch: share of training time rank 0 waited for input} from metrics.jsonl records (trainer history)."""
    out = {}
    for r in records:
        train = r.get("train") or {}
        if isinstance(r.get("epoch"), int) and train.get("seconds"):
            out[r["epoch"]] = (train.get("data_seconds") or 0.0) / train["seconds"]
    return out


def read_metrics(run_dir: Path) -> list[dict]:
    """The run's metrics.jsonl records (one per epoch), [] when there is none."""
    return _json_lines(Path(run_dir) / METRICS_FILE)


class ProgressFile:
    """``progress.json``: rewritten when the position changed, at most every ``every_s`` unless forced.

    The sampler thread calls ``update`` after each sample (so the training loop writes no file while
    a sampler runs); the trainer's callback forces it when the stage changes.
    """

    def __init__(self, run_dir: Path, every_s: float = 5.0):
        self.path = Path(run_dir) / PROGRESS_FILE
        self.every_s = every_s
        self._written: dict | None = None
        self._when = 0.0

    def update(self, fields: dict, force: bool = False) -> None:
        now = time.time()
        if fields == self._written or (not force and now - self._when < self.every_s):
            return
        try:
            atomic_write_json(self.path, {**fields, "time": round(now, 3)}, fsync=False)
            self._written, self._when = dict(fields), now
        except OSError:
            pass  # a progress file is a convenience: never fail training over it


def read_progress(run_dir: Path | None) -> dict | None:
    if run_dir is None:
        return None
    return read_json_dict(Path(run_dir) / PROGRESS_FILE)


__all__ = ["PROGRESS_FILE", "ProgressFile", "epoch_data_wait", "latest_rows", "read_metrics", "read_progress",
           "read_rows", "read_series"]
