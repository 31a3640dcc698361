"""``collect``: one Slurm query, every point's record, the scaling table, the model next to it, files.

Writes into the study directory: ``points.json`` (every point: what was asked, where it ran,
job ids, throughput, step-time split, flags, speed-up, efficiency, the model's prediction;
plus predictions beyond the measured sizes), ``points.csv`` (the same, flat), ``table.txt``
and the plots ``scaling_throughput.png``, ``scaling_efficiency.png``, ``scaling_model.png``.
Points still queued, running or failed are listed with their state; nothing is averaged.
"""
from __future__ import annotations

from pathlib import Path

from ..errors import ConfigError, ProfileError
from ..files import atomic_write_json, atomic_write_text, read_json_dict
from ..slurm.jobs import records as slurm_records
from . import model
from .plots import write_plots
from .points import add_scaling, point_record
from .report import csv_text, format_table
from .state import point_states, require_state
from .study import StudySpec, allreduce_files, read_allreduce, study_from_dict

POINTS_JSON, POINTS_CSV, TABLE_TXT = "points.json", "points.csv", "table.txt"
EFFICIENCY = "throughput(N) / (N x throughput(1))"


def resolve_links(spec: StudySpec, profile_name: str | None) -> tuple[model.Links | None, str]:
    """Link parameters for the model and where they came from: the study's ``model.links``, its
    ``model.allreduce`` result files, else the profile's ``links``; (None, why) when none."""
    if spec.model.links:
        return model.links_from_dict(spec.model.links, "study model.links"), "study file (model.links)"
    if spec.model.allreduce:
        files = allreduce_files(spec)
        levels = dict(read_allreduce(path, f"model.allreduce[{i}]") for i, path in enumerate(files))  # level -> Link
        if "inter" not in levels:  # measured on one node only: the best guess for every link
            levels["inter"] = levels["intra"]
        return model.Links(levels["inter"], levels.get("intra")), "hpcnn bench allreduce: " + ", ".join(map(str, files))
    if profile_name:
        try:
            from ..slurm.site.profiles import load_profile

            links = load_profile(profile_name).links
        except (ProfileError, ConfigError, AttributeError):
            links = None
        if links:
            return model.links_from_dict(links, f"profile {profile_name} links"), f"profile {profile_name} (links)"
    return None, ("no link parameters: add model.links or model.allreduce (from `hpcnn bench allreduce`) to the "
                  "study, or links to the site profile")


def step_profile(base: dict, spec: StudySpec, records: list[dict] = ()) -> model.StepProfile | None:
    """The model's starting point: the 1-rank point's step (no communication) and gradient size.

    Forward+backward (``compute``) and the data wait (``data``) are per-image work; the optimizer
    step, and whatever else the measured step holds beyond those three, is a per-step constant
    (the model's one-rank step is then the measured one). One rank has no DDP buckets: their sizes
    come from a measured multi-rank point when there is one (DDP's real bucket sizes), else the
    default 25 MiB cap splits the gradient.
    """
    step = base.get("step_time_s") or {}
    if base["ranks"] != 1 or not base.get("gradient_bytes") or not step.get("compute"):
        return None
    compute, data = float(step["compute"]), float(step.get("data") or 0)
    optimizer = max(float(step.get("optimizer") or 0), float(step.get("total") or 0) - compute - data)
    buckets = base.get("bucket_bytes") or next((r["bucket_bytes"] for r in records if r.get("bucket_bytes")), None)
    return model.StepProfile(compute_s=compute, grad_bytes=float(base["gradient_bytes"]),
                             batch_per_rank=float(base["global_batch"] if spec.mode == "strong"
                                                  else base["batch_per_rank"]),
                             data_s=data, optimizer_s=optimizer,
                             bucket_bytes=tuple(buckets) if isinstance(buckets, list) else buckets or None,
                             backward_fraction=spec.model.backward_fraction)


def add_predictions(records: list[dict], base: dict | None, spec: StudySpec, links: model.Links | None) -> list[dict]:
    """Each record's ``predicted`` block (None without a model); returns predictions beyond the measured sizes."""
    profile = step_profile(base, spec, records) if base and links else None
    m = spec.model

    def run(ranks, per_node):
        return model.predict(profile, links, [ranks], per_node, spec.mode, m.algorithm, m.overlap)[0].to_dict()

    for record in records:
        record["predicted"] = None if profile is None else run(record["ranks"], record["per_node"])
    if profile is None:
        return []
    per_node = m.ranks_per_node or max(r["per_node"] for r in records)
    measured = {r["ranks"] for r in records}
    return [run(n, per_node) for n in m.gpus if n not in measured]


def collect(study_dir: str | Path, write: bool = True) -> dict:
    """The study's report (also written as points.json, points.csv, table.txt and PNGs when ``write``)."""
    study_dir = Path(study_dir).absolute()
    state = require_state(study_dir)
    spec = study_from_dict(state["spec"], str(study_dir / "study.json"))
    states = point_states(state, state.get("order") or list(state["points"]))
    recs = [point_record(state["points"][key], s.status, s.bench, s.nodelist, s.reason, s.job_ids)
            for key, s in states.items()]
    base = add_scaling(recs)
    links, links_source = resolve_links(spec, state.get("profile"))
    extra = add_predictions(recs, base, spec, links)
    report = {
        "study": spec.name, "source": spec.source, "study_dir": str(study_dir), "mode": spec.mode,
        "batch": _batch_text(spec, recs), "efficiency": EFFICIENCY, "baseline": base["key"] if base else None,
        "model": {"algorithm": spec.model.algorithm, "overlap": spec.model.overlap,
                  "backward_fraction": spec.model.backward_fraction,
                  "links": links.to_dict() if links else None, "links_source": links_source,
                  "active": bool(any(r["predicted"] for r in recs))},
        "points": recs, "predictions": extra, "collected_at": slurm_records.now_iso(),
    }
    if write:
        write_report(study_dir, report)
    return report


def _batch_text(spec: StudySpec, recs: list[dict]) -> str:
    if not recs:
        return ""
    if spec.mode == "strong":
        batch = recs[0]["global_batch"]
        return f"strong scaling: global batch {batch} fixed, each of N ranks gets {batch}/N"
    return f"weak scaling: {recs[0]['batch_per_rank']} images per rank fixed, global batch grows with N"


def write_report(study_dir: Path, report: dict) -> list[Path]:
    return [atomic_write_json(study_dir / POINTS_JSON, report),
            atomic_write_text(study_dir / POINTS_CSV, csv_text(report["points"])),
            atomic_write_text(study_dir / TABLE_TXT, format_table(report) + "\n")] + write_plots(report, study_dir)


def read_report(study_dir: str | Path) -> dict | None:
    return read_json_dict(Path(study_dir) / POINTS_JSON)


__all__ = ["EFFICIENCY", "POINTS_CSV", "POINTS_JSON", "TABLE_TXT", "add_predictions", "collect", "read_report",
           "resolve_links", "step_profile", "write_report"]
