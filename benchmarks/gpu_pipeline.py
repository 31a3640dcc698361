"""Real JPEGs through hpcnn's file pipeline vs synthetic batches on the device: ResNet-50, one GPU.

    python benchmarks/gpu_pipeline.py --out gpu_out/pipeline.json [--images 2400] [--copies 4] [--workers 16]

Writes the synthetic galaxies as 224² JPEGs (``hpcnn data generate --format jpg --size 224``,
hard-linked ``--copies`` times so an epoch is long enough that worker start-up at epoch
boundaries does not dominate), then runs ``hpcnn bench`` three times in this process:
``--data synthetic``, ``--data real`` with ``data.decode=gpu`` and with ``data.decode=cpu``
(PIL in ``--workers`` processes). Prints one JSON object with each run's images/s, data-wait
time per step and the ratios real/synthetic (target >= 0.9 with GPU decoding). Without CUDA it
prints a "skipped" object (the CPU code paths are covered by tests/integration/test_bench.py).
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

from emit import emit  # benchmarks/emit.py: the script's own folder is on sys.path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from hpcnn.bench.run import bench_job  # noqa: E402
from hpcnn.config import load_job  # noqa: E402
from hpcnn.data.synthetic import write_image_folder  # noqa: E402

RESNET50 = ["model.name=resnet50", "data.image_size=224", "train.batch_size=256", "train.amp=bf16",
            "train.channels_last=true", "optim.name=sgd", "optim.weight_decay=0.0001", "train.deterministic=false",
            "monitor.enabled=true"]


def _write_part(args) -> None:
    root, n, seed = args
    write_image_folder(root, n, size=224, seed=seed, fmt="jpg", split_fractions=None)


def write_jpegs(root: Path, n: int, copies: int, procs: int) -> int:
    """``n`` JPEGs written by ``procs`` processes (different seeds), hard-linked ``copies`` times into one tree."""
    from concurrent.futures import ProcessPoolExecutor

    parts = [(root.parent / f"part{i}", n // procs, i) for i in range(procs)]
    with ProcessPoolExecutor(procs) as pool:
        list(pool.map(_write_part, parts))
    count = 0
    for part, _, i in parts:
        for f in part.rglob("*.jpg"):
            target = root / f.parent.name
            target.mkdir(parents=True, exist_ok=True)
            for k in range(copies):
                os.link(f, target / f"p{i}_{f.stem}_c{k}{f.suffix}")
                count += 1
    return count


def one(mode: str, decode: str | None, root: Path, args) -> dict:
    extra = [] if mode == "synthetic" else ["data.source=folder", f"data.root={root}", f"data.decode={decode}",
                                            f"data.num_workers={args.workers}"]
    cfg = load_job(None, RESNET50 + extra)
    t0 = time.perf_counter()
    r = bench_job(cfg, None, data=mode, warmup=args.warmup, steps=args.steps, windows=args.windows)
    return {"mode": mode, "decode": r["decode"], "images_per_second": r["images_per_second"],
            "data_wait_s_per_step": r["step_time_s"]["data"], "step_s": r["step_time_s"]["total"],
            "data_wait_fraction": r["step_time_s"]["data"] / r["step_time_s"]["total"],
            "peak_memory_mib": r["peak_memory_mib"], "gpu": r["gpu"], "wall_s": time.perf_counter() - t0,
            "device": r["device"]}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--images", type=int, default=2400, help="distinct JPEGs written (70%% land in train)")
    p.add_argument("--copies", type=int, default=4, help="hard links per file (longer epochs, same bytes)")
    p.add_argument("--workers", type=int, default=min(16, os.cpu_count() or 1))
    p.add_argument("--warmup", type=int, default=10)
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--windows", type=int, default=3)
    p.add_argument("--modes", default="synthetic,gpu,cpu", help="which runs: synthetic, gpu, cpu")
    p.add_argument("--root", help="reuse/keep the JPEG folder here (default: a temporary one)")
    p.add_argument("--out")
    args = p.parse_args()
    if not torch.cuda.is_available():
        out = {"benchmark": "gpu_pipeline", "skipped": "needs CUDA (no GPU visible)"}
    else:
        with tempfile.TemporaryDirectory() as tmp:
            root = Path(args.root) if args.root else Path(tmp) / "jpegs"
            t0 = time.perf_counter()
            files = write_jpegs(root, args.images, args.copies, min(8, os.cpu_count() or 1)) if not root.exists() else None
            gen_s = time.perf_counter() - t0
            runs = {}
            for mode in args.modes.split(","):
                runs[mode] = one("synthetic" if mode == "synthetic" else "real", None if mode == "synthetic"
                                 else mode, root, args)
                print(json.dumps(runs[mode]), file=sys.stderr, flush=True)
        syn = runs.get("synthetic", {}).get("images_per_second", {}).get("median")
        out = {"benchmark": "gpu_pipeline", "model": "resnet50", "image_size": 224, "batch": 256, "precision": "bf16",
               "files": files, "generate_s": gen_s, "workers": args.workers, "runs": runs,
               "ratio_gpu_decode_vs_synthetic": runs["gpu"]["images_per_second"]["median"] / syn
               if syn and "gpu" in runs else None,
               "ratio_cpu_decode_vs_synthetic": runs["cpu"]["images_per_second"]["median"] / syn
               if syn and "cpu" in runs else None, "target": 0.9}
    out["created"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    emit(out, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
