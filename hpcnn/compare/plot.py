"""The overlay PNG: loss (train solid, validation dashed) and the monitored metric vs epoch, one colour per run."""
from __future__ import annotations

import io
from pathlib import Path

from ..files import atomic_write
from .runs import Run, curve

LEGEND_LABEL_MAX = 70  # characters; long labels (phases=[...]) are cut


def _colours(n: int):
    import matplotlib

    cmap = matplotlib.colormaps["tab10" if n <= 10 else "tab20" if n <= 20 else "viridis"]
    return [cmap(i if n <= 20 else i / max(1, n - 1)) for i in range(n)]


def _short(label: str) -> str:
    return label if len(label) <= LEGEND_LABEL_MAX else label[:LEGEND_LABEL_MAX - 1] + "…"


def overlay(runs: list[Run], metric: str, out: str | Path, title: str = "") -> Path:
    """Write the PNG atomically; returns its path."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    drawn = [run for run in runs if run.history]
    fig, (ax_loss, ax_metric) = plt.subplots(1, 2, figsize=(12, 4.8))
    for run, colour in zip(drawn, _colours(len(drawn))):
        x, y = curve(run.history, "train.loss")
        ax_loss.plot(x, y, color=colour, lw=1.6, label=_short(run.label))
        x, y = curve(run.history, "val.loss")
        ax_loss.plot(x, y, color=colour, lw=1.2, ls="--")
        x, y = curve(run.history, metric)
        if y:
            ax_metric.plot(x, y, color=colour, lw=1.6, marker="o" if len(y) < 15 else None, ms=3)
    ax_loss.set(xlabel="epoch", ylabel="loss", title="loss (train solid, validation dashed)")
    ax_metric.set(xlabel="epoch", ylabel=metric, title=metric)
    for ax in (ax_loss, ax_metric):
        ax.grid(alpha=0.3)
        ax.xaxis.get_major_locator().set_params(integer=True)
    columns = 1 if len(drawn) <= 4 else 2 if len(drawn) <= 12 else 3
    fig.legend(loc="lower center", ncol=columns, fontsize=8, frameon=False)
    if title:
        fig.suptitle(title, fontsize=10)
    rows = -(-len(drawn) // columns)
    fig.tight_layout(rect=(0, min(0.5, 0.02 + 0.042 * rows), 1, 1))
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100)
    plt.close(fig)
    return Path(atomic_write(out, lambda f: f.write(buffer.getvalue())))


__all__ = ["overlay"]
