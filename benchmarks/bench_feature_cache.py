"""Head-only training on cached backbone features vs the frozen backbone run every epoch (same job).

    .venv/bin/python benchmarks/bench_feature_cache.py [--repeats 3] [--epochs 8] [--model simple_cnn]

Runs the same head-only phase with `train.cache_features=never` and `always`, alternating, in
fresh run directories, and prints one JSON object: median training seconds (the phase's epochs,
including computing the features once for the cached path), median wall seconds, the speed-ups,
and the test accuracy of each path (they should agree within a point).
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from hpcnn.config import load_job  # noqa: E402
from hpcnn.run import run_job  # noqa: E402


def one(mode: str, args, root: Path, i: int) -> dict:
    cfg = load_job(None, [f"model.name={args.model}", f"data.image_size={args.size}", f"data.n_train={args.n}",
                          "train.plots=false", "train.tensorboard=false", "train.log_every=1000",
                          "monitor.enabled=false", "train.eval_test=true", f"train.cache_features={mode}",
                          f"phases=[{{name: head, epochs: {args.epochs}, trainable: head}}]"])
    t0 = time.perf_counter()
    result = run_job(cfg, root / f"{mode}-{i}")
    wall = time.perf_counter() - t0
    return {"train_s": result.summary["train_seconds"], "wall_s": wall,
            "test_accuracy": result.summary["metrics"]["test"]["accuracy"]}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--epochs", type=int, default=8)
    p.add_argument("--model", default="simple_cnn")
    p.add_argument("--size", type=int, default=64)
    p.add_argument("--n", type=int, default=4000)
    args = p.parse_args()
    runs: dict[str, list[dict]] = {"never": [], "always": []}
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(args.repeats):
            for mode in ("never", "always"):
                runs[mode].append(one(mode, args, Path(tmp), i))
    med = {m: {k: statistics.median(r[k] for r in rs) for k in ("train_s", "wall_s", "test_accuracy")}
           for m, rs in runs.items()}
    print(json.dumps({"model": args.model, "image_size": args.size, "train_images": args.n, "epochs": args.epochs,
                      "repeats": args.repeats, "uncached": med["never"], "cached": med["always"],
                      "train_speedup": med["never"]["train_s"] / med["always"]["train_s"],
                      "wall_speedup": med["never"]["wall_s"] / med["always"]["wall_s"]}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
