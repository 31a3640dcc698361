"""The comparison table: one row per run, the differing config keys as columns, final metrics from summary.json.

Values come from ``hpcnn.results.value`` (the one reader of the results schema), so ``val.*`` are the
best epoch's validation metrics and ``test.*`` the best weights on the test split.
"""
from __future__ import annotations

from .. import results, tables
from .diff import MISSING, flatten, format_value
from .runs import Run

EXTRA_METRICS = ("val.loss", "test.accuracy", "wall_seconds")


def metric_columns(metric: str) -> list[str]:
    return [metric, *(m for m in EXTRA_METRICS if m != metric)]


def comparison(runs: list[Run], keys: list[str], metric: str) -> list[dict]:
    """One dict per run (JSON-ready): dir, label, state, reason, differing config values, epochs, metrics."""
    rows = []
    for run in runs:
        flat = flatten(run.config)
        rows.append({"run_dir": str(run.path), "name": run.name, "label": run.label, "state": run.state,
                     "reason": run.reason,
                     "config": {k: flat.get(k) for k in keys} if run.config is not None else None,
                     "epochs": len(run.history), "best_epoch": (run.summary or {}).get("best_epoch"),
                     "metrics": {m: results.value(run.summary, m) for m in metric_columns(metric)}})
    return rows


def _number(value, key: str = "") -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.4f}" if abs(value) < 10 and not key.endswith("seconds") else f"{value:.1f}"
    return str(value)


def format_table(rows: list[dict], keys: list[str], metric: str) -> str:
    """Plain text: run, the differing keys, state, epochs, the metric and a few more; reasons at the line end."""
    columns = metric_columns(metric)
    lines = [["run", *keys, "state", "epochs", *columns]]
    for row in rows:
        config = row["config"]  # None: the run has no config yet ("-"); a value None is a YAML null ("null")
        lines.append([row["name"], *(format_value(MISSING if config is None else config[k]) for k in keys),
                      row["state"], str(row["epochs"]), *(_number(row["metrics"][m], m) for m in columns)])
    return tables.format_table(lines, [None, *(row["reason"] for row in rows)])


__all__ = ["EXTRA_METRICS", "comparison", "format_table", "metric_columns"]
