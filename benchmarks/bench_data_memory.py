"""Peak memory of an HDF5 job per rank and per node, 1 rank vs 2 ranks on one node.

    .venv/bin/python benchmarks/bench_data_memory.py [--images 8000] [--side 256] [--dir DIR] [--out X.json]

Prints one JSON object. Writes an HDF5 file of ``--images`` uint8 RGB images of ``--side``² (Galaxy10
layout: ``images``, ``ans``; 8,000 x 256² x 3 = 1.57 GB) and a tiny one (``--tiny`` images), then runs
``torchrun --standalone --nproc_per_node=K`` of ``hpcnn train`` (gloo, CPU, 1 epoch of 2 steps, then
val/test evaluation) with the images kept at their size (``data.image_size = --side``: the data set is
as large in memory as on disk) and once resized (``--resize``: chunked, straight to uint8). Per rank:
peak RSS (``VmHWM``, read by the rank itself at its end). Per job: the peak over time of the summed
proportional set size (``Pss`` of ``/proc/PID/smaps_rollup``, shared pages split between the processes
mapping them) of the whole process tree, sampled every 0.2 s: the node's memory, and what each process
(launcher, rank, DataLoader worker) held at that peak (``Pss`` split into private ``anon`` and the shared
``shmem`` file). ``above_baseline``: minus the same job on the tiny file (torch's own footprint); the tiny
job holds out ``--tiny-val-fraction`` for validation so that every rank evaluates full batches of 64 like the
big job (with 15% of 200 images a rank's batches held ~15 images: the baseline lacked most of a rank's
evaluation working set). ``load_only``: the data alone, each rank's
PSS growth across loading it (every rank then faults in every image), summed over the node; training
adds a working set per rank (a 64-image evaluation batch at 256² through the model: ~500 MB) that a node
holds once per rank whatever hpcnn does. The generated files are removed unless ``--dir`` is given.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from emit import emit  # benchmarks/emit.py: the script's own folder is on sys.path
from peak_rss import MEASURE, peaks as peak_records
from procfs import process_tree

REPO = Path(__file__).resolve().parents[1]
JOB = ["data.source=hdf5", "model.name=simple_cnn", "model.channels=[8,16]", "model.hidden=[32]",
       "train.epochs=1", "train.max_steps_per_epoch=2", "train.batch_size=32", "train.threads=1",
       "train.device=cpu", "dist.backend=gloo", "train.plots=false", "train.tensorboard=false",
       "monitor.enabled=false"]

LOAD = """
import json, os, sys
import h5py, torch
from hpcnn.config import load_job
from hpcnn.data import jobscope
from hpcnn.data.sources import load_splits
from hpcnn.dist import make_comm
from hpcnn.env import detect_world
def pss():
    return int([l for l in open("/proc/self/smaps_rollup") if l.startswith("Pss:")][0].split()[1])
comm = make_comm(detect_world(), "gloo", torch.device("cpu"), 600)
comm.barrier()
before = pss()
with jobscope.bound(comm, None):
    splits = load_splits(load_job(None, sys.argv[1:]).data)
base = splits.train.base
touched = int(base.max())  # read every image (uint8 max: no wider copy): every rank maps all the node's copy
comm.barrier()
grown = comm.all_gather_object(pss() - before)
comm.barrier()
if comm.rank == 0:
    print("PSS_GROWTH " + json.dumps(grown), flush=True)
comm.shutdown()
"""


def write_hdf5(path: Path, n: int, side: int, seed: int = 0) -> int:
    """n random RGB images (written a block at a time: the generator never holds the file in memory)."""
    import h5py
    import numpy as np

    if path.exists():
        return path.stat().st_size
    rng = np.random.default_rng(seed)
    with h5py.File(path, "w") as f:
        images = f.create_dataset("images", (n, side, side, 3), dtype="uint8")
        for lo in range(0, n, 500):
            hi = min(n, lo + 500)
            images[lo:hi] = rng.integers(0, 256, (hi - lo, side, side, 3), dtype=np.uint8)
        f.create_dataset("ans", data=rng.integers(0, 10, n).astype(np.int64))
    return path.stat().st_size




def rollup_kib(pid: int) -> dict:
    """Pss and its private (anon) and shared-memory (shmem) parts; empty once the process is gone."""
    out = {}
    try:
        for line in open(f"/proc/{pid}/smaps_rollup"):
            key, _, value = line.partition(":")
            if key in ("Pss", "Pss_Anon", "Pss_Shmem"):
                out[key] = int(value.split()[0])
    except OSError:
        pass
    return out


def role(pid: int, launcher: int) -> str:
    """launcher, rank R, or rank R worker (a DataLoader worker inherits its rank's RANK)."""
    def env_rank(p):
        try:
            env = open(f"/proc/{p}/environ", "rb").read().split(b"\0")
        except OSError:
            return None
        return next((e[5:].decode() for e in env if e.startswith(b"RANK=")), None)

    rank = env_rank(pid)
    if pid == launcher or rank is None:
        return "launcher" if pid == launcher else "other"
    try:
        parent = int(open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()[1])
    except (OSError, IndexError, ValueError):
        parent = launcher
    return f"rank {rank} worker" if parent != launcher and env_rank(parent) == rank else f"rank {rank}"


def run_job(h5: Path, ranks: int, size: int, work: Path, name: str, extra: tuple = ()) -> dict:
    script = work / "measure.py"
    script.write_text(MEASURE)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={ranks}", str(script),
           "train", *JOB, *extra, f"data.root={h5}", f"data.image_size={size}", f"--run-dir={work / ('run-' + name)}"]
    proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    node_peak, at_peak, peak_s = 0, [], 0.0
    t0 = time.perf_counter()
    while proc.poll() is None:
        sample = {p: rollup_kib(p) for p in process_tree(proc.pid)}
        total = sum(r.get("Pss", 0) for r in sample.values())
        if total > node_peak:
            node_peak, peak_s = total, time.perf_counter() - t0
            at_peak = [{"process": role(p, proc.pid), **{k: round(r.get(v, 0) / 1024, 1) for k, v in
                        (("pss_mib", "Pss"), ("anon_mib", "Pss_Anon"), ("shmem_mib", "Pss_Shmem"))}}
                       for p, r in sample.items() if r]
        time.sleep(0.2)
    stdout, stderr = proc.communicate(timeout=600)
    if proc.returncode != 0:
        raise SystemExit(f"{name} failed ({proc.returncode}): {stderr[-3000:]}")
    peaks = peak_records(stdout)
    shutil.rmtree(work / ("run-" + name), ignore_errors=True)
    return {"case": name, "ranks": ranks, "image_size": size, "rank_peak_rss_mib": [round(p["self_kib"] / 1024, 1) for p in peaks],
            "node_peak_pss_mib": round(node_peak / 1024, 1), "node_peak_at_s": round(peak_s, 1),
            "node_peak_by_process": sorted(at_peak, key=lambda r: r["process"]),
            "seconds": round(time.perf_counter() - t0, 1)}


def load_only(h5: Path, ranks: int, size: int, work: Path) -> dict:
    """The data alone: the summed growth of the ranks' PSS across loading it, every rank having mapped it all."""
    script = work / "load.py"
    script.write_text(LOAD)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={ranks}", str(script),
           "data.source=hdf5", f"data.root={h5}", f"data.image_size={size}"]
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=1200)
    if proc.returncode != 0:
        raise SystemExit(f"load-only {ranks} failed ({proc.returncode}): {proc.stderr[-3000:]}")
    grown = json.loads(proc.stdout.split("PSS_GROWTH ", 1)[1].splitlines()[0])
    return {"case": f"load-{ranks}rank", "ranks": ranks, "rank_pss_growth_mib": [round(g / 1024, 1) for g in grown],
            "node_pss_growth_mib": round(sum(grown) / 1024, 1)}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--images", type=int, default=8000)
    p.add_argument("--side", type=int, default=256)
    p.add_argument("--tiny", type=int, default=300)
    p.add_argument("--tiny-val-fraction", type=float, default=0.5,
                   help="the tiny job's data.val_fraction: every rank evaluates a full batch of 64, as the big job's")
    p.add_argument("--resize", type=int, default=64, help="image_size of the resized case (0 = skip it)")
    p.add_argument("--load-only", action="store_true", help="only the data-loading cases (no training jobs)")
    p.add_argument("--dir", help="work directory (kept, files reused); default a temporary one, removed")
    p.add_argument("--out", help="also write the JSON here")
    args = p.parse_args()
    work = Path(args.dir or tempfile.mkdtemp(prefix="hpcnn-bench-memory-"))
    work.mkdir(parents=True, exist_ok=True)
    big, tiny = work / f"big-{args.images}x{args.side}.h5", work / f"tiny-{args.tiny}x{args.side}.h5"
    file_bytes = write_hdf5(big, args.images, args.side)
    write_hdf5(tiny, args.tiny, args.side, seed=1)
    loads = [load_only(big, ranks, args.side, work) for ranks in (1, 2)]
    load_ratio = round(loads[1]["node_pss_growth_mib"] / loads[0]["node_pss_growth_mib"], 3)
    file_mib = file_bytes / 2 ** 20
    if args.load_only:
        emit({"benchmark": "data_memory", "date": time.strftime("%Y-%m-%d"), "host": platform.node(),
              "file": {"images": args.images, "side": args.side, "mib": round(file_mib, 1)}, "load_only": loads,
              "node_data_pss_2_to_1_rank": load_ratio,
              "command": "python benchmarks/bench_data_memory.py " + " ".join(sys.argv[1:])}, args.out)
        return 0
    cases = {}
    for ranks in (1, 2):
        cases[f"tiny-{ranks}rank"] = run_job(tiny, ranks, args.side, work, f"tiny-{ranks}rank",
                                             (f"data.val_fraction={args.tiny_val_fraction}",))
        cases[f"big-{ranks}rank"] = run_job(big, ranks, args.side, work, f"big-{ranks}rank")
    if args.resize:
        cases["resized-1rank"] = run_job(big, 1, args.resize, work, "resized-1rank")
    base_rank = max(cases["tiny-1rank"]["rank_peak_rss_mib"])
    above = {name: [round(r - base_rank, 1) for r in c["rank_peak_rss_mib"]] for name, c in cases.items()
             if not name.startswith("tiny")}
    node = {ranks: cases[f"big-{ranks}rank"]["node_peak_pss_mib"] for ranks in (1, 2)}
    node_above = {ranks: node[ranks] - cases[f"tiny-{ranks}rank"]["node_peak_pss_mib"] for ranks in (1, 2)}
    report = {"benchmark": "data_memory", "date": time.strftime("%Y-%m-%d"), "host": platform.node(),
              "cpus": os.cpu_count(), "python": platform.python_version(),
              "file": {"images": args.images, "side": args.side, "mib": round(file_mib, 1)},
              "cases": list(cases.values()), "load_only": loads, "node_data_pss_2_to_1_rank": load_ratio,
              "rank_peak_rss_above_baseline_mib": above,
              "worst_rank_above_baseline_per_file_size": round(max(max(v) for v in above.values()) / file_mib, 3),
              "node_pss_2_to_1_rank": round(node[2] / node[1], 3),
              "node_pss_above_baseline_2_to_1_rank": round(node_above[2] / node_above[1], 3),
              "command": "python benchmarks/bench_data_memory.py " + " ".join(sys.argv[1:])}
    emit(report, args.out)
    if not args.dir:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
