"""A sweep's final metrics as a table: best first, then unfinished tasks, then failures with their reason."""
from __future__ import annotations

from .jobs import TaskStatus


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
    done.sort(key=lambda r: r["value"], reverse=(mode == "max"))
    for i, row in enumerate(done, 1):
        row["rank"] = i
    for row in running + failed:
        row["rank"] = None
    return done + running + failed


def _fmt(value, digits: int = 4) -> str:
    if value is None:
        return "-"
    return f"{value:.{digits}f}" if isinstance(value, float) else str(value)


def format_table(rows: list[dict], metric: str = "val.accuracy") -> str:
    """Plain text, one line per task; failures carry their reason on the same line."""
    header = ["rank", "task", "job", "state", metric, "test.accuracy", "wall_s", "overrides"]
    lines = [header]
    for r in rows:
        lines.append([_fmt(r["rank"]), _fmt(r["index"]), r["job_id"], r["state"], _fmt(r["value"]),
                      _fmt(r["test_accuracy"]), _fmt(r["wall_seconds"], 1), " ".join(r["overrides"]) or "(base)"])
    widths = [max(len(str(line[i])) for line in lines) for i in range(len(header) - 1)]
    out = []
    for line, row in zip(lines, [None] + rows):
        text = "  ".join(str(c).ljust(w) for c, w in zip(line, widths)) + "  " + line[-1]
        if row and row["reason"] and row["rank"] is None:
            text += f"    <- {row['reason']}"
        out.append(text.rstrip())
    return "\n".join(out)


__all__ = ["format_table", "rank_rows"]
