"""Tables of a sweep's or group's tasks: best first by any numeric key of summary.json, then
unfinished tasks, then failures with their reason.

Values come from ``hpcnn.results.value`` (the one results schema), so ``val.accuracy``,
``images_per_second``, ``wall_seconds`` or ``gpu.energy_j`` all rank the same way.
"""
from __future__ import annotations

from pathlib import Path

from ... import results, rundir, tables
from .status import TaskStatus

EXTRA_COLUMNS = ("test.accuracy", "images_per_second")   # shown next to the ranked metric


def rank_rows(statuses: list[TaskStatus], metric: str = "val.accuracy", mode: str = "max") -> list[dict]:
    """One dict per task with a ``rank`` (1 = best) for tasks that produced the metric."""
    done, running, failed = [], [], []
    for s in statuses:
        row = {**s.to_dict(), "metric": metric, "value": s.metric(metric)}
        if s.succeeded and row["value"] is not None:
            done.append(row)
        elif s.finished:
            if not row["reason"]:
                row["reason"] = f"{s.state}: no {metric} in summary.json"
            failed.append(row)
        else:
            running.append(row)
    return _ranked(done, running + failed, mode)


def _ranked(done: list[dict], rest: list[dict], mode: str) -> list[dict]:
    """``done`` best first, ranked 1, 2, ...; then ``rest`` as it is, unranked."""
    done = sorted(done, key=lambda r: r["value"], reverse=(mode == "max"))
    for rank, row in enumerate(done, 1):
        row["rank"] = rank
    for row in rest:
        row["rank"] = None
    return done + rest


RUN_FILES = (rundir.SUMMARY_FILE, rundir.CONFIG_FILE)   # a directory with either is a run directory


def _is_run(path: Path) -> bool:
    return any((path / name).is_file() for name in RUN_FILES)


def run_dirs(root: Path) -> list[Path]:
    """The run directories in ``root`` (runs/, or a sweep's directory): its children, and their children one
    level down (a sweep's tasks), in name order."""
    found = []
    for child in sorted(p for p in root.iterdir() if p.is_dir()):
        found += [child] if _is_run(child) else sorted(g for g in child.iterdir() if g.is_dir() and _is_run(g))
    return found


def rank_run_dirs(root: str | Path, metric: str = "val.accuracy", mode: str = "max") -> list[dict]:
    """Rows like ``rank_rows`` for every run directory under ``root``, from their summary.json alone (no Slurm)."""
    root = Path(root)
    statuses = []
    for index, run_dir in enumerate(run_dirs(root)):
        summary = rundir.read_summary(run_dir)
        job = (summary or {}).get("job") or {}
        state = str(summary.get("status")).upper() if summary else "NO_SUMMARY"
        row = {"index": index, "job_id": str(job.get("job_id") or "-"), "state": state, "run_dir": str(run_dir),
               "label": str(run_dir.relative_to(root)), "overrides": [], "nodelist": job.get("nodelist"),
               "metric": metric, "value": results.value(summary, metric),
               "test_accuracy": results.value(summary, "test.accuracy"),
               "images_per_second": results.value(summary, "images_per_second"),
               "wall_seconds": results.value(summary, "wall_seconds"),
               "reason": None if summary else "no summary.json: still running, or stopped before the end "
                                               "(hpcnn status RUN_DIR says which)"}
        if summary and row["value"] is None:
            row["reason"] = f"{state}: no {metric} in summary.json"
        statuses.append(row)
    return _ranked([r for r in statuses if r["reason"] is None], [r for r in statuses if r["reason"] is not None],
                   mode)


def format_number(value, digits: int | None = None) -> str:
    """'-' for missing; floats with ``digits`` decimals, by default 4 below 10 (accuracies) and 1 above (img/s)."""
    if value is None:
        return "-"
    if not isinstance(value, float):
        return str(value)
    if digits is None:
        digits = 4 if abs(value) < 10 else 1
    return f"{value:.{digits}f}"


def format_table(rows: list[dict], metric: str = "val.accuracy") -> str:
    """Plain text, one line per task; failures carry their reason on the same line."""
    extras = [k for k in EXTRA_COLUMNS if k != metric]
    lines = [["rank", "task", "job", "state", metric, *extras, "wall_s", "nodes", "label"]]
    for r in rows:
        label = r.get("label") or " ".join(r["overrides"]) or "(base)"
        lines.append([format_number(r["rank"]), format_number(r["index"]), r["job_id"], r["state"],
                      format_number(r["value"]), *(format_number(r.get(k.replace('.', '_'))) for k in extras),
                      format_number(r["wall_seconds"], 1), r.get("nodelist") or "-", label])
    notes = [None] + [r["reason"] if r["reason"] and r["rank"] is None else None for r in rows]
    return tables.format_table(lines, notes)


__all__ = ["format_number", "format_table", "rank_rows", "rank_run_dirs", "run_dirs"]
