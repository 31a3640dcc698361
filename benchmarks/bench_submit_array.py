"""Time to submit a sweep of N tasks as Slurm array(s) from the Python API (target: 10,000 tasks < 10 s), then cancel it.

    eval "$(bash tests/slurm/cluster.sh env)"     # or any Slurm login node
    .venv/bin/python benchmarks/bench_submit_array.py [--tasks 10000] [--profile local] [--out FILE]

Prints one JSON object (benchmarks/emit.py). The array is submitted held (#SBATCH --hold) so no
task runs, and it is cancelled at the end: only the login-node cost is measured (expand, check
every task's overrides against the validated base, pre-flight, sweep.json, one payload per
array and one link to it per task, sbatch, records; run directories are made by the tasks).
A cancelled array stays in slurmctld's memory for MinJobAge (300 s on the test cluster) and
counts against MaxJobCount (20,000): leave 5 minutes between two 10,000-task runs there.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import hpcnn  # noqa: E402
from emit import emit  # noqa: E402  (benchmarks/emit.py: the script's own folder is on sys.path)
from hpcnn.slurm.site import commands  # noqa: E402
from hpcnn.slurm import plan_array  # noqa: E402


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--tasks", type=int, default=1000)
    p.add_argument("--profile", default="local")
    p.add_argument("--keep", action="store_true", help="keep the sweep directory (default: a temp dir, removed)")
    p.add_argument("--out", help="also write the JSON here")
    args = p.parse_args()

    root = Path(tempfile.mkdtemp(prefix="hpcnn-bench-"))
    os.environ.setdefault("HPCNN_STATE_DIR", str(root / "state"))
    lrs = [round(1e-4 * (i + 1), 6) for i in range(args.tasks)]
    kwargs = dict(grid={"optim.lr": lrs}, profile=args.profile, name="bench",
                  resources={"time": "00:05:00", "extra_sbatch": {"hold": True}},
                  overrides=[f"train.runs_dir={root / 'runs'}", "data.source=digits"])
    t0 = time.perf_counter()
    plan = plan_array(None, **kwargs)
    t_plan = time.perf_counter() - t0
    t0 = time.perf_counter()
    sweep = hpcnn.submit_array(None, **kwargs)
    t_submit = time.perf_counter() - t0
    t0 = time.perf_counter()
    states = commands.query_states(sweep.array_ids)
    t_query = time.perf_counter() - t0
    sweep.cancel()
    result = {"tasks": len(sweep), "arrays": sweep.array_ids, "chunks": plan.chunks,
              "submit_seconds": round(t_submit, 3), "target_seconds": 10.0, "ok": t_submit < 10.0,
              "plan_only_seconds": round(t_plan, 3), "status_query_seconds": round(t_query, 3),
              "states_seen": len(states), "sweep_dir": str(sweep.sweep_dir) if args.keep else None}
    emit(result, args.out)
    if not args.keep:
        import shutil

        shutil.rmtree(root, ignore_errors=True)
    return 0 if result["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
