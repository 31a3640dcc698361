"""The study's PNGs: throughput vs ideal, efficiency vs ranks, measured vs model (matplotlib, Agg).

Points on one node and points on several nodes are drawn as separate lines (a "1 x 2" and a
"2 x 1" point have the same rank count but not the same links); flagged points are red crosses,
apart from the lines; the model's predictions beyond the measured sizes are their own dotted line.
"""
from __future__ import annotations

from pathlib import Path

from ..files import atomic_write

PLOTS = ("scaling_throughput.png", "scaling_efficiency.png", "scaling_model.png")


def _save(fig, path: Path) -> Path:
    atomic_write(path, lambda f: fig.savefig(f, format="png", dpi=110, bbox_inches="tight"))
    return path


def _series(rows: list[dict]) -> list[tuple[str, list[dict]]]:
    """(label, rows by rank count): one node, then several nodes."""
    one = sorted((r for r in rows if r["nodes"] == 1), key=lambda r: r["ranks"])
    many = sorted((r for r in rows if r["nodes"] > 1), key=lambda r: r["ranks"])
    return [(label, part) for label, part in (("1 node", one), ("several nodes", many)) if part]


def _measured(report: dict, flagged: bool) -> list[dict]:
    return [r for r in report["points"] if r.get("images_per_second") is not None and bool(r.get("flags")) == flagged]


def _axes(ax, xs, unit: str, title: str, ylabel: str):
    import matplotlib.ticker as ticker

    ax.set_xscale("log", base=2)
    ax.xaxis.set_major_formatter(ticker.FuncFormatter(lambda x, _: f"{x:g}"))
    if xs:
        ax.set_xlim(min(xs) / 1.3, max(xs) * 1.3)
    ax.set(xlabel=unit, ylabel=ylabel, title=title)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=8)


def _points(ax, rows, key, style, label, **kw):
    ax.plot([r["ranks"] for r in rows], [r[key] for r in rows], style, label=label, **kw)
    for r in rows:
        ax.annotate(r["key"], (r["ranks"], r[key]), textcoords="offset points", xytext=(4, 4), fontsize=7)


def write_plots(report: dict, out_dir: Path) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    good, flagged = _measured(report, False), _measured(report, True)
    unit = "GPUs" if any(r["gpus"] for r in report["points"]) else "ranks (CPU tasks)"
    title = f"{report['study']} ({report['mode']} scaling)"
    xs = [r["ranks"] for r in report["points"]]
    base = next((r for r in report["points"] if r["key"] == report["baseline"]), None)
    paths = []

    fig, ax = plt.subplots(figsize=(6, 4))
    for label, rows in _series(good):
        _points(ax, rows, "images_per_second", "o-", f"measured, {label}")
    if base:
        one = base["images_per_second"] / base["ranks"]
        ideal = sorted(set(xs))
        ax.plot(ideal, [one * x for x in ideal], "--", color="grey", label="ideal (linear)")
    if flagged:
        _points(ax, flagged, "images_per_second", "x", "flagged placement", color="red", markersize=9)
    _axes(ax, xs, unit, title, "images / s")
    paths.append(_save(fig, out_dir / PLOTS[0]))
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(6, 4))
    for label, rows in _series([r for r in good if r.get("efficiency") is not None]):
        _points(ax, rows, "efficiency", "o-", f"measured, {label}")
    for label, rows in _series([r for r in good if r.get("predicted")]):
        ax.plot([r["ranks"] for r in rows], [r["predicted"]["efficiency"] for r in rows], "s:",
                label=f"model, {label}")
    ax.axhline(1.0, color="grey", linestyle="--", linewidth=1)
    ax.set_ylim(0, 1.15)
    _axes(ax, xs, unit, title, "parallel efficiency")
    paths.append(_save(fig, out_dir / PLOTS[1]))
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(6, 4))
    for label, rows in _series(good):
        _points(ax, rows, "images_per_second", "o", f"measured, {label}")
    for label, rows in _series([r for r in report["points"] if r.get("predicted")]):
        ax.plot([r["ranks"] for r in rows], [r["predicted"]["images_per_second"] for r in rows], "s:",
                label=f"model, {label}")
    beyond = sorted(report.get("predictions") or [], key=lambda p: p["ranks"])
    if beyond:
        ax.plot([p["ranks"] for p in beyond], [p["images_per_second"] for p in beyond], "^--",
                label=f"model beyond ({beyond[0]['ranks_per_node']}/node)")
    if not report["model"]["active"]:
        ax.text(0.5, 0.5, "no model: " + report["model"]["links_source"], transform=ax.transAxes, ha="center",
                va="center", fontsize=7, wrap=True)
    ax.set_yscale("log")
    _axes(ax, xs + [p["ranks"] for p in beyond], unit, f"{title}: measured vs model", "images / s")
    paths.append(_save(fig, out_dir / PLOTS[2]))
    plt.close(fig)
    return paths


__all__ = ["PLOTS", "write_plots"]
