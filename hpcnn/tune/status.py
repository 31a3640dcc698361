"""Reading a search from any login-node shell: trials by state, the best so far, what pruning saved.

``hpcnn tune status DIR`` replays the journal (read only: no lock held while reading) and, when
a trial has finished, writes the best one's config as ``DIR/best.yaml``: a job file to train
or submit as it is (``hpcnn train DIR/best.yaml``).
"""
from __future__ import annotations

from collections import Counter
from pathlib import Path

from ..files import atomic_write_text
from ..tables import format_table
from ..rundir import config_path
from . import asha
from .spec import read_record
from .study import read_study, retried_from
from .trials import device_hours

BEST_FILE = "best.yaml"


def report(search_dir: str | Path, plots: bool = False) -> dict:
    """{states, best, epochs_run, epochs_saved, device_hours, budget, trials}: what `tune status` prints.

    ``plots``: also write history.png and importance.png (``hpcnn.tune.plots``) into the search directory.
    """
    search_dir = Path(search_dir).absolute()
    search = read_record(search_dir)
    study = read_study(search_dir)
    trials = [t for t in study.get_trials(deepcopy=False) if not t.user_attrs.get("over_budget")]
    promoted = asha.promoted_from(trials)
    states = Counter(state_label(t, promoted) for t in trials)
    run = sum(_epochs_trained(t) for t in trials if t.state.is_finished())
    saved = sum((c.total or search.base.train.epochs) - asha.epochs_reached(c)  # configurations stopped for good
                for c in asha.configs(trials).values()
                if c.latest.state.name == "PRUNED" and c.latest.number not in promoted)
    done = [t for t in trials if t.state.name == "COMPLETE" and t.value is not None]
    top = (max if search.direction == "maximize" else min)(done, key=lambda t: t.value, default=None)
    best = None if top is None else {
        "trial": top.number, "value": top.value, "params": top.params,
        "run_dir": str(search_dir / top.user_attrs.get("run_dir", "")), "config": _write_best(search_dir, top)}
    pictures = []
    if plots:
        from .plots import write_plots

        pictures = [str(p) for p in write_plots(study, search_dir, search.metric, search.direction)]
    return {"search_dir": str(search_dir), "metric": search.metric, "direction": search.direction, "plots": pictures,
            "states": dict(states), "best": best, "epochs_run": run, "epochs_saved_by_pruning": saved,
            "device_hours": round(device_hours(trials), 4), "budget": {"trials": search.spec.budget.trials,
                                                                      "gpu_hours": search.spec.budget.gpu_hours},
            "trials": [_row(t, promoted) for t in trials]}


def _write_best(search_dir: Path, trial) -> str | None:
    source = config_path(search_dir / trial.user_attrs.get("run_dir", ""))
    if not source.is_file():
        return None
    overrides = " ".join(trial.user_attrs.get("overrides", []))
    header = f"# best trial {trial.number} of {search_dir} ({trial.value}): {overrides}\n"
    return str(atomic_write_text(search_dir / BEST_FILE, header + source.read_text()))


def state_label(trial, promoted: set[int]) -> str:
    """Optuna's state, except that a trial ASHA paused says paused, or promoted once a continuation took it on."""
    if trial.state.name == "PRUNED" and "paused_at" in trial.user_attrs:
        return "promoted" if trial.number in promoted else "paused"
    return trial.state.name.lower()


def _epochs_trained(trial) -> int:
    """Epochs this study trial trained (a continuation: those after the epoch it resumed from)."""
    attrs = trial.user_attrs
    return int(attrs["epochs_trained"] if "epochs_trained" in attrs else (attrs.get("epochs_run") or 0))


def _row(trial, promoted: set[int]) -> dict:
    return {"trial": trial.number, "state": state_label(trial, promoted), "value": trial.value,
            "epochs": len(trial.intermediate_values), "params": trial.params,
            "run_dir": trial.user_attrs.get("run_dir"), "worker": trial.user_attrs.get("worker"),
            "retry_of": retried_from(trial), "continues": trial.user_attrs.get("continues"),
            "failure": trial.user_attrs.get("failure")}


def format_report(rep: dict) -> str:
    states = ", ".join(f"{n} {s}" for s, n in sorted(rep["states"].items())) or "no trials yet"
    budget = rep["budget"]
    lines = [f"search {rep['search_dir']}", f"  trials: {states} (budget: {budget['trials'] or '-'} trials, "
             f"{budget['gpu_hours'] or '-'} GPU-hours)",
             f"  epochs run: {rep['epochs_run']}; saved by pruning: {rep['epochs_saved_by_pruning']}; "
             f"GPU-hours used: {rep['device_hours']}"]
    best = rep["best"]
    if best:
        lines.append(f"  best: trial {best['trial']} {rep['metric']} {best['value']:.4f} ({rep['direction']}) "
                     + " ".join(f"{k}={v}" for k, v in best["params"].items()))
        lines.append(f"  best config: {best['config']}  (hpcnn train {best['config']})")
    lines += [f"  plot: {path}" for path in rep.get("plots") or []]
    table = [("trial", "state", "value", "epochs", "continues", "params")]
    for row in rep["trials"]:
        value = f"{row['value']:.4f}" if isinstance(row["value"], float) else "-"
        params = " ".join(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}" for k, v in row["params"].items())
        after = "-" if row.get("continues") is None else row["continues"]
        table.append((row["trial"], row["state"], value, row["epochs"], after, params))
    lines.append(format_table(table, align="rlrrr", indent="  "))
    return "\n".join(lines)


__all__ = ["BEST_FILE", "format_report", "report", "state_label"]
