"""`hpcnn compare RUN_DIR... | SWEEP_DIR`: learning curves of several runs in one PNG and a table of their results.

Torch-free: it reads each run directory's resolved config, metrics.jsonl and summary.json
(``hpcnn.rundir``); matplotlib is loaded only to draw. Errors are HpcnnErrors (one line, exit 2).
"""
from __future__ import annotations

from pathlib import Path

from ..compare import collect, comparison, curve, format_table, monitored_metric
from ..compare.plot import overlay
from ..errors import HpcnnError
from .args import add_json, print_json

DEFAULT_PNG = "compare.png"


def cmd_compare(args) -> int:
    runs, keys = collect(args.paths)
    metric = args.metric or monitored_metric(runs)
    rows = comparison(runs, keys, metric)
    if not any(curve(run.history, metric)[1] for run in runs) and all(r["metrics"][metric] is None for r in rows):
        raise HpcnnError(f"no run has '{metric}' (per epoch in metrics.jsonl, or in summary.json)", "--metric",
                         "use val.accuracy, val.loss, val.f1_macro, train.loss, ...")
    title = f"{len(runs)} runs; differing: {', '.join(keys)}" if keys else f"{len(runs)} runs, same config"
    # a lone sweep directory keeps its plot; otherwise the current directory
    lone_sweep = len(args.paths) == 1 and (Path(args.paths[0]) / "sweep.json").is_file()
    png = overlay(runs, metric, args.out or (Path(args.paths[0]) if lone_sweep else Path()) / DEFAULT_PNG, title)
    if args.json:
        print_json({"metric": metric, "differing_keys": keys, "png": str(png), "runs": rows})
        return 0
    print(format_table(rows, keys, metric))
    print(f"\ndiffering config keys: {', '.join(keys) if keys else '(none: the configs are identical)'}")
    print(f"learning curves ({metric}): {png}")
    return 0


def register(subparsers) -> None:
    c = subparsers.add_parser("compare", help="learning curves of several runs in one PNG, and their results",
                              description="Compare runs: the loss and the monitored metric of every run vs epoch "
                              "in one PNG, each line labelled by the config keys that differ, and a table of the "
                              "final metrics (summary.json) with those keys as columns. A sweep directory stands "
                              "for its tasks; unfinished or failed tasks are listed as such.")
    c.add_argument("paths", nargs="+", metavar="RUN_DIR|SWEEP_DIR", help="run directories and/or sweep directories")
    c.add_argument("--metric", metavar="KEY",
                   help="per-epoch metric to draw and tabulate (default: what the runs monitored, e.g. val.accuracy)")
    c.add_argument("--out", metavar="PNG", help=f"where the plot goes (default: SWEEP_DIR/{DEFAULT_PNG} for a "
                   f"sweep, else ./{DEFAULT_PNG})")
    add_json(c, help="print the table as JSON")
    c.set_defaults(func=cmd_compare)
