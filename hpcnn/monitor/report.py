"""`hpcnn report RUN_DIR`: GPU plots over time (one line per GPU, shaded by what training was doing)
and the summary as Markdown, in ``RUN_DIR/gpu_report/``. matplotlib only, no display needed."""
from __future__ import annotations

from pathlib import Path

from ..errors import HpcnnError
from ..files import atomic_write, atomic_write_text
from ..rundir import read_summary
from .series import epoch_data_wait, read_metrics, read_series
from .summary import summarize, summary_lines

REPORT_DIR = "gpu_report"
PLOTS = {  # file stem -> (title, [(field, label)], y label)
    "utilisation": ("GPU utilisation", [("util_percent", "SM")], "%"),
    "memory": ("GPU memory in use", [("mem_used_mib", "used")], "MiB"),
    "power": ("GPU power", [("power_w", "draw")], "W"),
    "clocks": ("GPU clocks", [("sm_clock_mhz", "SM"), ("mem_clock_mhz", "memory")], "MHz"),
}
STAGE_COLOURS = {"setup": "#dddddd", "eval": "#ffe08a", "checkpoint": "#f4a6a6", "test": "#b8d8f0",
                 "done": "#eeeeee"}


def stage_bands(rows: list[dict], t0: float) -> list[tuple[float, float, str]]:
    """(start min, end min, stage) runs of equal stage in one GPU's rows (train is left unshaded)."""
    bands: list[tuple[float, float, str]] = []
    for a, b in zip(rows, rows[1:] + rows[-1:]):
        stage = a.get("stage", "train")
        start, end = (a["time"] - t0) / 60, (b["time"] - t0) / 60
        if bands and bands[-1][2] == stage:
            bands[-1] = (bands[-1][0], end, stage)
        else:
            bands.append((start, end, stage))
    return [b for b in bands if b[2] != "train"]


def data_bound_spans(rows: list[dict], epochs: list[int], t0: float) -> list[tuple[float, float]]:
    """(start min, end min) of the training rows in data-bound epochs."""
    spans = []
    for epoch in epochs:
        times = [r["time"] for r in rows if r.get("epoch") == epoch and r.get("stage", "train") == "train"]
        if times:
            spans.append(((min(times) - t0) / 60, (max(times) - t0) / 60))
    return spans


def _plot(series: dict, stem: str, path: Path, bound_epochs: list[int] = ()) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    title, fields, unit = PLOTS[stem]
    t0 = min(rows[0]["time"] for rows in series.values())
    fig, ax = plt.subplots(figsize=(10, 4))
    first = next(iter(series.values()))
    seen = set()
    for start, end, stage in stage_bands(first, t0):
        ax.axvspan(start, end, color=STAGE_COLOURS.get(stage, "#dddddd"), alpha=0.5, lw=0,
                   label=stage if stage not in seen else None)
        seen.add(stage)
    for i, (start, end) in enumerate(data_bound_spans(first, list(bound_epochs), t0)):
        ax.axvspan(start, end, facecolor="none", hatch="//", edgecolor="#999999", lw=0,
                   label="data-bound" if i == 0 else None)
    for (host, gpu), rows in series.items():
        for field, label in fields:
            points = [((r["time"] - t0) / 60, r[field]) for r in rows if isinstance(r.get(field), (int, float))]
            if points:
                name = f"{host}:{gpu}" + (f" {label}" if len(fields) > 1 else "")
                ax.plot([p[0] for p in points], [p[1] for p in points], lw=1.2, label=name)
    ax.set(xlabel="minutes since the first sample", ylabel=unit, title=title)
    if stem == "utilisation":
        ax.set_ylim(0, 105)
    ax.legend(fontsize=7, loc="best", ncol=2)
    fig.tight_layout()
    atomic_write(path, lambda f: fig.savefig(f, format="png", dpi=100))
    plt.close(fig)


def markdown(run_dir: Path, gpu: dict, pngs: list[Path]) -> str:
    lines = [f"# GPU report: {Path(run_dir).name}", ""]
    lines += [f"- {line}" for line in summary_lines(gpu)]
    lines += ["", "| node | GPU | util mean | util p5 | peak memory MiB | SM clock MHz | energy J | throttling |",
              "|---|---|---|---|---|---|---|---|"]
    for g in gpu["per_gpu"]:
        throttle = ", ".join(f"{k} {v:.0f}s" for k, v in g["throttle_seconds"].items()) or "-"
        lines.append(f"| {g['host']} | {g['gpu']} | {g['util_mean_percent']} | {g['util_p5_percent']} | "
                     f"{g['mem_max_mib']} | {g['sm_clock_mhz']} | {g['energy_j']} | {throttle} |")
    lines += [""] + [f"![{p.stem}]({p.name})" for p in pngs] + [""]
    return "\n".join(lines)


def make_report(run_dir: Path, out_dir: Path | None = None) -> tuple[Path, list[Path]]:
    """Write the PNGs and ``gpu_report.md``; returns (markdown path, PNG paths)."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise HpcnnError("no such run directory", str(run_dir))
    series = read_series(run_dir)
    if not series:
        raise HpcnnError("this run has no GPU samples (gpu/rank*.jsonl)", str(run_dir),
                         "monitoring records GPU runs only; check monitor.enabled and that the job used a GPU")
    out = Path(out_dir) if out_dir else run_dir / REPORT_DIR
    summary = read_summary(run_dir) or {}
    images = round((summary.get("images_per_second") or 0) * (summary.get("train_seconds") or 0)) or None
    gpu = summarize(run_dir, images, summary.get("data_wait_fraction"), None, epoch_data_wait(read_metrics(run_dir)))
    bound = (gpu.get("data_bound") or {}).get("epochs", [])
    pngs = [out / f"gpu_{stem}.png" for stem in PLOTS]
    for stem, path in zip(PLOTS, pngs):
        _plot(series, stem, path, bound)
    return atomic_write_text(out / "gpu_report.md", markdown(run_dir, gpu, pngs)), pngs


__all__ = ["PLOTS", "make_report", "markdown", "stage_bands"]
