"""``hpcnn scale check``: which points fell below the study's reference figures (nightly regression runs).

A point fails when its images/s (or efficiency) is below ``reference × (1 − tolerance)``, when
it has no measurement (failed, missing, still running), or when it ran on another placement
than asked (its number is not comparable). Points without a reference are not judged.
"""
from __future__ import annotations

from pathlib import Path

from .collect import collect
from .state import require_state
from .study import StudySpec, study_from_dict


def check_report(report: dict, spec: StudySpec) -> list[dict]:
    """One entry per judged point and figure: {point, figure, reference, floor, measured, ok, why}."""
    by_key = {r["key"]: r for r in report["points"]}
    tol = spec.reference.tolerance
    out = []
    for figure in ("images_per_second", "efficiency"):
        for key, ref in getattr(spec.reference, figure).items():
            record = by_key.get(str(key)) or {"status": "missing", "flags": []}
            floor = ref * (1 - tol)
            measured = record.get(figure)
            if record.get("flags"):
                ok, why = False, "placement differs: " + "; ".join(record["flags"])
            elif measured is None:
                ok, why = False, f"no measurement ({record.get('status')}" + (
                    f": {record['reason']})" if record.get("reason") else ")")
            elif measured < floor:
                ok, why = False, f"{measured:.4g} < {floor:.4g} ({ref:g} - {100 * tol:g}%)"
            else:
                ok, why = True, f"{measured:.4g} >= {floor:.4g}"
            out.append({"point": str(key), "figure": figure, "reference": ref, "floor": floor, "measured": measured,
                        "ok": ok, "why": why})
    return out


def check(study_dir) -> list[dict]:
    """Collect the study (writing its report) and judge it against the reference figures of its study file."""
    state = require_state(Path(study_dir))
    report = collect(study_dir)
    return check_report(report, study_from_dict(state["spec"], str(Path(study_dir) / "study.json")))


__all__ = ["check", "check_report"]
