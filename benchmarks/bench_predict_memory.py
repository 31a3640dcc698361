"""Peak memory of `hpcnn predict` at 2,000 vs 20,000 image files (and with DataLoader workers).

    .venv/bin/python benchmarks/bench_predict_memory.py [--files 20000] [--small 2000] [--workers 2] [--repeat 2]

Prints one JSON object. Trains a tiny run (digits, 1 epoch), writes ``--files`` small PNG files,
then runs ``python -m hpcnn predict RUN LIST.txt --out X.csv`` in a fresh process per case,
alternating small and large. Each process reports its own peak RSS (``VmHWM``, after the
predict returns) and the largest peak among its waited-for children (the DataLoader workers,
``RUSAGE_CHILDREN``); the benchmark also samples /proc every 0.1 s to count the process tree and its
summed RSS (shared pages counted once per process, so an upper bound). Medians over ``--repeat``;
``self_growth_mib``: the largest peak minus the ``--small`` one (0 and --workers workers).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from emit import emit  # benchmarks/emit.py: the script's own folder is on sys.path
from peak_rss import MEASURE, peaks
from procfs import process_tree, rss_kib

REPO = Path(__file__).resolve().parents[1]
TRAIN = ["data.source=digits", "data.image_size=16", "data.channels=1", "model.channels=[8,16]", "train.epochs=1",
         "train.batch_size=64", "train.plots=false", "train.tensorboard=false", "train.threads=1",
         "monitor.enabled=false"]


def write_files(folder: Path, n: int) -> list[str]:
    """n distinct 24x24 RGB PNG files (about 2 KB each)."""
    import numpy as np
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    paths = []
    for i in range(n):
        path = folder / f"{i // 1000:03d}" / f"img{i:06d}.png"
        path.parent.mkdir(exist_ok=True)
        if not path.exists():
            Image.fromarray(rng.integers(0, 255, (24, 24, 3), dtype=np.uint8)).save(path)
        paths.append(str(path))
    return paths




def measure(run: Path, listing: Path, out: Path, workers: int, env: dict) -> dict:
    argv = [sys.executable, "-c", MEASURE, "predict", str(run), str(listing), "--out", str(out), "--num-workers",
            str(workers), "--json"]
    proc = subprocess.Popen(argv, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    tree_peak, most = 0, 0
    while proc.poll() is None:
        pids = process_tree(proc.pid)
        most = max(most, len(pids) - 1)
        tree_peak = max(tree_peak, sum(rss_kib(p) for p in pids))
        time.sleep(0.1)
    stdout, stderr = proc.communicate(timeout=600)
    if proc.returncode != 0:
        raise SystemExit(f"predict failed ({proc.returncode}): {stderr[-2000:]}")
    (peak,) = peaks(stdout)
    result = json.loads(stdout[stdout.index("{"):stdout.index("PEAK_RSS")])
    return {"self_mib": peak["self_kib"] / 1024, "worker_peak_mib": peak["children_kib"] / 1024 if workers else 0.0,
            "children_seen": most, "tree_sampled_peak_mib": tree_peak / 1024,
            "images_per_second": result["images_per_second"], "inputs": result["inputs"]}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--files", type=int, default=20000)
    p.add_argument("--small", type=int, default=2000)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--repeat", type=int, default=2)
    p.add_argument("--more", type=int, nargs="*", default=[],
                   help="further input counts, listing the --files files again in a cycle (e.g. 60000)")
    p.add_argument("--arena-max", type=int, help="run the predict processes with MALLOC_ARENA_MAX=N (glibc)")
    p.add_argument("--dir", help="work directory (kept); default a temporary one, removed")
    p.add_argument("--out", help="also write the JSON here")
    args = p.parse_args()

    root = Path(args.dir or tempfile.mkdtemp(prefix="hpcnn-bench-predict-"))
    run = root / "run"
    if not (run / "checkpoints" / "best.pt").is_file():
        subprocess.run([sys.executable, "-m", "hpcnn", "train", *TRAIN, f"--run-dir={run}"], cwd=REPO, check=True,
                       capture_output=True, timeout=600)
    t0 = time.perf_counter()
    paths = write_files(root / "images", args.files)
    generate_s = time.perf_counter() - t0
    lists = {}
    sizes = [args.small, args.files, *args.more]
    for n in sizes:
        lists[n] = root / f"list-{n}.txt"
        lists[n].write_text("\n".join(paths[i % len(paths)] for i in range(n)) + "\n")
    cases = [(n, w) for w in (0, args.workers) for n in sizes]  # small, large alternate
    env = dict(os.environ, **({"MALLOC_ARENA_MAX": str(args.arena_max)} if args.arena_max else {}))
    samples: dict = {c: [] for c in cases}
    for _ in range(args.repeat):
        for n, w in cases:
            samples[(n, w)].append(measure(run, lists[n], root / "out.csv", w, env))
    rows = []
    for (n, w), runs in samples.items():
        rows.append({"files": n, "workers": w, **{k: round(statistics.median(r[k] for r in runs), 1)
                                                 for k in runs[0] if k != "inputs"}})

    def growth(w: int) -> float:
        by = {r["files"]: r for r in rows if r["workers"] == w}
        return round(max(by[n]["self_mib"] for n in sizes[1:]) - by[args.small]["self_mib"], 1)

    report = {"benchmark": "predict_peak_rss", "date": time.strftime("%Y-%m-%d"), "host": platform.node(),
              "cpus": os.cpu_count(), "python": platform.python_version(), "repeat": args.repeat, "malloc_arena_max": args.arena_max,
              "generate_seconds": round(generate_s, 1), "cases": rows,
              "self_growth_mib": {str(w): growth(w) for w in (0, args.workers)},
              "command": "python benchmarks/bench_predict_memory.py " + " ".join(sys.argv[1:])}
    emit(report, args.out)
    if not args.dir:
        import shutil

        shutil.rmtree(root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
