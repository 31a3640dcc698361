"""The study report as text: the scaling table (weak or strong stated) and points.csv."""
from __future__ import annotations

import csv
import io

from .. import tables

CSV_COLUMNS = ("key", "nodes", "per_node", "ranks", "batch_per_rank", "global_batch", "status", "images_per_second",
               "images_per_second_min", "images_per_second_max", "speedup", "efficiency", "step_s", "data_s",
               "compute_s", "comm_s", "optimizer_s", "predicted_images_per_second", "predicted_efficiency",
               "predicted_step_s", "predicted_comm_s", "nodes_ran", "job_id", "job_ids", "flags", "reason")


def _num(value, digits: int = 1) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def _ms(step: dict | None, key: str) -> str:
    value = (step or {}).get(key)
    return "-" if value is None else f"{1000 * value:.1f}"


def flat(record: dict) -> dict:
    step = record.get("step_time_s") or {}
    pred = record.get("predicted") or {}
    return {**{k: record.get(k) for k in CSV_COLUMNS if k in record},
            "step_s": step.get("total"), "data_s": step.get("data"), "compute_s": step.get("compute"),
            "comm_s": step.get("comm"), "optimizer_s": step.get("optimizer"),
            "predicted_images_per_second": pred.get("images_per_second"),
            "predicted_efficiency": pred.get("efficiency"), "predicted_step_s": pred.get("step_s"),
            "predicted_comm_s": pred.get("comm_s"),
            "nodes_ran": " ".join(record.get("nodes_ran") or []), "job_ids": " ".join(record.get("job_ids") or []),
            "flags": "; ".join(record.get("flags") or [])}


def csv_text(records: list[dict]) -> str:
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=CSV_COLUMNS, lineterminator="\n")
    writer.writeheader()
    for record in records:
        writer.writerow({k: ("" if v is None else v) for k, v in flat(record).items()})
    return out.getvalue()


def table_rows(report: dict) -> list[list[str]]:
    rows = [["point", "ranks", "batch/rank", "img/s", "min-max", "speed-up", "efficiency", "step ms", "data",
             "compute", "comm", "optim", "model img/s", "model eff", "model comm", "ran on", "job", "state"]]
    for r in report["points"]:
        step, pred = r.get("step_time_s"), r.get("predicted") or {}
        spread = "-" if r.get("images_per_second_min") is None else \
            f"{r['images_per_second_min']:.1f}-{r['images_per_second_max']:.1f}"
        rows.append([r["key"] + (" !" if r.get("flags") else ""), str(r["ranks"]), str(r["batch_per_rank"]),
                     _num(r.get("images_per_second")), spread, _num(r.get("speedup"), 2),
                     _num(r.get("efficiency"), 2), _ms(step, "total"), _ms(step, "data"), _ms(step, "compute"),
                     _ms(step, "comm"), _ms(step, "optimizer"), _num(pred.get("images_per_second")),
                     _num(pred.get("efficiency"), 2), _ms(pred, "comm_s"), ",".join(r.get("nodes_ran") or []) or "-",
                     r.get("job_id") or "-", r["status"]])
    return rows


def algorithm_mix(algorithms: dict | None) -> str:
    """{"ring": 3, "recursive_doubling": 1} -> "ring x3 + recursive_doubling x1" ("-" when none ran)."""
    return " + ".join(f"{name} x{count}" for name, count in sorted((algorithms or {}).items())) or "-"


def format_table(report: dict) -> str:
    """The table with its header lines: mode and batch, the efficiency definition, baseline, model, flags."""
    lines = [f"study {report['study']}: {report['batch']}",
             f"efficiency = {report['efficiency']}; baseline: point {report['baseline'] or '(none measured yet)'}"]
    m = report["model"]
    if m["active"]:
        algorithm = "auto (the fastest variant per bucket)" if m["algorithm"] == "auto" else m["algorithm"]
        lines.append(f"model: {algorithm} allreduce, {'with' if m['overlap'] else 'without'} overlap, "
                     f"links from {m['links_source']}")
    else:
        lines.append(f"model: not shown ({m['links_source'] if not m['links'] else 'needs a measured 1-rank point'})")
    lines.append(tables.format_table(table_rows(report)))
    for r in report["points"]:
        for flag in r.get("flags") or []:
            lines.append(f"! {r['key']}: placement differs from the request: {flag} (not used as baseline)")
        if r.get("reason") and r["status"] != "done":
            lines.append(f"  {r['key']}: {r['reason']}")
    if report.get("predictions"):
        lines.append("model beyond the measured sizes:")
        lines += [f"  {p['ranks']} ranks ({p['nodes']} node(s) x {p['ranks_per_node']}): "
                  f"{p['images_per_second']:.1f} img/s, efficiency {p['efficiency']:.2f}, step "
                  f"{1000 * p['step_s']:.1f} ms (exposed comm {1000 * p['exposed_comm_s']:.1f} ms)"
                  + (f", allreduce {algorithm_mix(p.get('algorithms'))}" if m["algorithm"] == "auto" else "")
                  for p in report["predictions"]]
    return "\n".join(lines)


__all__ = ["CSV_COLUMNS", "algorithm_mix", "csv_text", "flat", "format_table", "table_rows"]
