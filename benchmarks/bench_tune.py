"""TPE + ASHA pruning against a grid of the same size, both through `hpcnn tune` on Slurm: best accuracy and epochs.

    eval "$(bash tests/slurm/cluster.sh env)"     # or any Slurm login node
    .venv/bin/python benchmarks/bench_tune.py [--trials 16] [--epochs 8] [--workers 2] [--repeats 3]
        [--sampler tpe|random] [--pruner asha|hyperband|median] [--min-epochs 2] [--reduction-factor 3] [--out FILE]

Both searches tune learning rate (log), weight decay (log), dropout and batch size of a CPU-sized
job (scikit-learn digits, 16 px, a small CNN) with ``--workers`` Slurm workers each. The grid has two
values per key (the quartiles of each range, log-spaced where the range is: 2^4 = 16 trials) and
trains every trial for all its epochs; the adaptive search draws the same number of trials with TPE
and pauses the bad ones with ASHA (the defaults of
``pruner``), resuming a paused trial that comes to rank among the best at its rung. Prints one JSON object (benchmarks/emit.py): each search's best
validation accuracy, the epochs it trained, and the ratio. Epochs, not seconds, are the cost measured
(the machine is shared), so the result does not depend on load.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from emit import emit  # noqa: E402  (benchmarks/emit.py: the script's own folder is on sys.path)
from hpcnn.tune.spec import PrunerSpec  # noqa: E402
from hpcnn.tune.status import report  # noqa: E402
from hpcnn.tune.submit import submit_tune  # noqa: E402

JOB = ["data.source=digits", "data.image_size=16", "data.channels=1", "model.channels=[8,16]", "train.plots=false",
       "train.tensorboard=false", "train.threads=1", "train.log_every=20", "monitor.enabled=false"]
RANGES = {"optim.lr": (1e-4, 0.1, True), "optim.weight_decay": (1e-6, 1e-2, True), "model.dropout": (0.0, 0.5, False)}
BATCHES = [32, 64, 128]


def quartiles(low: float, high: float, log: bool) -> list[float]:
    if log:
        a, b = math.log10(low), math.log10(high)
        return [round(10 ** (a + (b - a) * q), 8) for q in (0.25, 0.75)]
    return [round(low + (high - low) * q, 6) for q in (0.25, 0.75)]


def search_file(root: Path, name: str, grid: bool, args) -> Path:
    space = {key: {"type": "float", "low": lo, "high": hi, "log": log, "grid": quartiles(lo, hi, log)}
             for key, (lo, hi, log) in RANGES.items()}
    space["train.batch_size"] = {"type": "categorical", "choices": [32, 128] if grid else BATCHES}
    data = {"name": name, "overrides": JOB + [f"train.epochs={args.epochs}", f"train.runs_dir={root / 'runs'}"],
            "space": space, "budget": {"trials": args.trials},
            "sampler": {"name": "grid", "seed": 0} if grid else {"name": args.sampler, "seed": 0,
                                                                  **({"startup_trials": 5} if args.sampler == "tpe" else {})},
            "pruner": {"name": "none"} if grid else {"name": args.pruner, "min_epochs": args.min_epochs,
                                                      "reduction_factor": args.reduction_factor},
            "workers": {"count": args.workers, "slurm": {"time": "01:00:00"}}}
    path = root / f"{name}.yaml"
    path.write_text(json.dumps(data))  # JSON is YAML
    return path


def wait(search_dir: Path) -> None:
    arrays = json.loads((search_dir / "arrays.json").read_text())
    ids = [a["job_id"] for a in arrays]
    while _queued(ids):
        time.sleep(5)


def _queued(ids: list[str]) -> bool:
    import subprocess

    out = subprocess.run(["squeue", "-h", "-o", "%i", "-j", ",".join(ids)], capture_output=True, text=True,
                         timeout=60).stdout
    return bool(out.strip())


def summary(search_dir: Path, wall_s: float) -> dict:
    rep = report(search_dir)
    return {"search_dir": str(search_dir), "trials": rep["states"], "best_val_accuracy": rep["best"]["value"],
            "best_params": rep["best"]["params"], "epochs": rep["epochs_run"],
            "epochs_saved_by_pruning": rep["epochs_saved_by_pruning"], "wall_s": round(wall_s, 1)}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--trials", type=int, default=16)
    p.add_argument("--epochs", type=int, default=8)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--sampler", default="tpe", choices=["tpe", "random"])
    p.add_argument("--pruner", default="asha", choices=["asha", "hyperband", "median"])
    p.add_argument("--min-epochs", type=int, default=PrunerSpec.min_epochs, help="the pruner's first rung")
    p.add_argument("--reduction-factor", type=int, default=PrunerSpec.reduction_factor,
                   help="the best 1/this of a rung go on")
    p.add_argument("--repeats", type=int, default=3, help="adaptive searches (the grid is run once: it is fixed)")
    p.add_argument("--profile", default="local")
    p.add_argument("--out", help="also write the JSON here")
    args = p.parse_args()
    root = Path(tempfile.mkdtemp(prefix="hpcnn-bench-tune-"))
    os.environ.setdefault("HPCNN_STATE_DIR", str(root / "state"))
    runs = []
    for name, grid in [("grid", True)] + [(f"tpe_asha_{i}", False) for i in range(args.repeats)]:
        start = time.time()  # one after the other: each search has the same share of the CPUs
        plan = submit_tune(search_file(root, name, grid, args), args.profile)
        wait(plan.search_dir)
        runs.append(summary(plan.search_dir, time.time() - start))
    grid, searches = runs[0], runs[1:]
    for run in searches:
        run["epochs_ratio"] = round(run["epochs"] / grid["epochs"], 3)
        run["done_when"] = run["epochs_ratio"] <= 0.6 and run["best_val_accuracy"] >= grid["best_val_accuracy"]
    emit({"benchmark": "tune", "trials": args.trials, "epochs_per_trial": args.epochs, "workers": args.workers,
          "sampler": args.sampler, "pruner": {"name": args.pruner, "min_epochs": args.min_epochs,
                                                                       "reduction_factor": args.reduction_factor}, "grid": grid,
          "tpe_asha": searches, "done_when_met": f"{sum(r['done_when'] for r in searches)} of {len(searches)}"},
         args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
