"""A search's two pictures (PNG, matplotlib Agg, no torch): the optimisation history and parameter importance.

``history.png``: each finished trial's value by trial number (pruned trials at their last reported
epoch, hollow), and the best so far. ``importance.png``: Optuna's fANOVA importance of each key
for the completed trials (needs at least two completed trials with different values).
"""
from __future__ import annotations

import io
import itertools
from pathlib import Path

from ..files import atomic_write

HISTORY = "history.png"
IMPORTANCE = "importance.png"


def _save(fig, plt, out: Path) -> Path:
    buffer = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buffer, format="png", dpi=100)
    plt.close(fig)
    return Path(atomic_write(out, lambda f: f.write(buffer.getvalue())))


def write_plots(study, search_dir: Path, metric: str, direction: str) -> list[Path]:
    """The PNGs that can be drawn from the study now, written into the search directory."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    trials = [t for t in study.get_trials(deepcopy=False) if t.state.name in ("COMPLETE", "PRUNED")]
    if not trials:
        return []
    fig, ax = plt.subplots(figsize=(7, 4))
    done = [(t.number, t.value) for t in trials if t.state.name == "COMPLETE" and t.value is not None]
    pruned = [(t.number, t.intermediate_values[max(t.intermediate_values)]) for t in trials
              if t.state.name == "PRUNED" and t.intermediate_values]
    if done:
        ax.plot(*zip(*done), "o", color="tab:blue", label="completed")
        numbers, values = zip(*sorted(done))
        best = itertools.accumulate(values, max if direction == "maximize" else min)
        ax.step(numbers, list(best), where="post", color="tab:red", label="best so far")
    if pruned:
        ax.plot(*zip(*pruned), "o", mfc="none", color="tab:gray", label="pruned (last epoch)")
    ax.set(xlabel="trial", ylabel=metric, title=f"optimisation history ({direction})")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    paths = [_save(fig, plt, search_dir / HISTORY)]
    importance = _importance(study)
    if importance:
        fig, ax = plt.subplots(figsize=(7, 0.5 + 0.45 * len(importance)))
        names = list(importance)[::-1]
        ax.barh(names, [importance[n] for n in names], color="tab:blue")
        ax.set(xlabel="importance (fANOVA)", title=f"parameter importance for {metric}")
        paths.append(_save(fig, plt, search_dir / IMPORTANCE))
    return paths


def _importance(study) -> dict:
    import optuna

    complete = [t for t in study.get_trials(deepcopy=False) if t.state.name == "COMPLETE"]
    if len({t.value for t in complete}) < 2:
        return {}
    try:
        return optuna.importance.get_param_importances(study)
    except (ValueError, RuntimeError):  # e.g. a key sampled in one trial only (conditional): no picture, no error
        return {}


__all__ = ["HISTORY", "IMPORTANCE", "write_plots"]
