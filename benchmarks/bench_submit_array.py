"""Time to submit a 1000-task sweep as Slurm array(s) from the Python API (target: < 10 s), then cancel it.

    eval "$(bash tests/slurm/cluster.sh env)"     # or any Slurm login node
    .venv/bin/python benchmarks/bench_submit_array.py [--tasks 1000] [--profile local]

Prints one JSON object. The array is submitted held (#SBATCH --hold) so no task runs, and it is
cancelled at the end: only the login-node cost is measured (expand + validate every task config,
pre-flight, one run directory and one pickled payload per task, sbatch, records).
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import hpcnn  # noqa: E402
from hpcnn.slurm.site import commands  # noqa: E402
from hpcnn.slurm import plan_array  # noqa: E402


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--tasks", type=int, default=1000)
    p.add_argument("--profile", default="local")
    p.add_argument("--keep", action="store_true", help="keep the sweep directory (default: a temp dir, removed)")
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
    print(json.dumps(result, indent=2))
    if not args.keep:
        import shutil

        shutil.rmtree(root, ignore_errors=True)
    return 0 if result["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
