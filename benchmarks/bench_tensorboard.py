"""What each TensorBoard extra costs: the same short job with the extra on vs all extras off, alternated.

    .venv/bin/python benchmarks/bench_tensorboard.py [--repeats 3] [--epochs 2] [--model simple_cnn]

Variants: ``off`` (scalars only), ``graph`` (traced once at the start), ``histograms`` (weights and
gradients every epoch), ``embeddings`` (projector for up to 1,000 test images at the end) and ``all``.
Each repeat runs every variant once, in turn, in a fresh run directory, on one torch thread. Prints
one JSON object: per variant and clock (``cpu``: the process's CPU seconds, which other jobs on a
shared machine do not inflate; ``wall``) the median seconds of the whole run, per epoch (run /
epochs), the ratio to ``off`` and the extra seconds over ``off``. Then one histogram write (weights and
gradients) of bigger torchvision models (``--histogram-models``), timed alone: its cost grows with the
number of parameters, not with the data.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from hpcnn.config import load_job  # noqa: E402
from hpcnn.run import run_job  # noqa: E402

OFF = ["tensorboard.graph=false", "tensorboard.histograms_every=0", "tensorboard.embeddings=false"]
VARIANTS = {
    "off": OFF,
    "graph": [*OFF, "tensorboard.graph=true"],
    "histograms": [*OFF, "tensorboard.histograms_every=1"],
    "embeddings": [*OFF, "tensorboard.embeddings=true"],
    "all": ["tensorboard.graph=true", "tensorboard.histograms_every=1", "tensorboard.embeddings=true"],
}


def one(variant: str, args, root: Path, i: int) -> tuple[float, float]:
    cfg = load_job(None, [f"model.name={args.model}", f"data.image_size={args.size}", f"data.n_train={args.n}",
                          "data.n_val=500", "data.n_test=1000", f"train.epochs={args.epochs}", "train.plots=false",
                          "train.tensorboard=true", "train.log_every=1000", "monitor.enabled=false",
                          "train.threads=1", *VARIANTS[variant]])
    t0, c0 = time.perf_counter(), time.process_time()
    with contextlib.redirect_stdout(sys.stderr):  # the run's log lines; stdout is for the JSON
        run_job(cfg, root / f"{variant}-{i}")
    return time.perf_counter() - t0, time.process_time() - c0


def histogram_write_s(name: str, root: Path, repeats: int) -> dict:
    """One histogram write (weights + gradients) of a bigger torchvision model, timed alone (median)."""
    import torch
    import torchvision
    from torch.utils.tensorboard import SummaryWriter

    from hpcnn.train.tensorboard import GradientKeeper, write_histograms

    model = getattr(torchvision.models, name)(num_classes=10)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.0)
    keeper = GradientKeeper(model, optimizer)
    keeper.active = True
    model(torch.rand(2, 3, 64, 64)).sum().backward()
    optimizer.step()
    writer = SummaryWriter(str(root / f"hist-{name}"))
    wall, cpu = [], []
    for step in range(repeats):
        grads = keeper.grads
        t0, c0 = time.perf_counter(), time.process_time()
        write_histograms(writer, model, keeper, step)
        wall.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
        keeper.grads = grads
    writer.close()
    return {"parameters": sum(p.numel() for p in model.parameters()), "cpu_s": round(statistics.median(cpu), 3),
            "wall_s": round(statistics.median(wall), 3)}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--model", default="simple_cnn")
    p.add_argument("--size", type=int, default=32)
    p.add_argument("--n", type=int, default=1000, help="training images (synthetic galaxies)")
    p.add_argument("--histogram-models", default="resnet18,resnet50",
                   help="torchvision models whose histogram write is timed alone ('' = none)")
    args = p.parse_args()
    times: dict[str, list[tuple[float, float]]] = {v: [] for v in VARIANTS}
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(args.repeats):
            for variant in VARIANTS:
                times[variant].append(one(variant, args, Path(tmp), i))
    out = {"model": args.model, "image_size": args.size, "train_images": args.n, "test_images": 1000,
           "epochs": args.epochs, "repeats": args.repeats, "threads": 1, "variants": {}}
    for clock, k in (("cpu", 1), ("wall", 0)):
        off = statistics.median(t[k] for t in times["off"])
        for variant, values in times.items():
            med = statistics.median(t[k] for t in values)
            out["variants"].setdefault(variant, {})[clock] = {
                "s": round(med, 2), "s_per_epoch": round(med / args.epochs, 3), "ratio_to_off": round(med / off, 3),
                "extra_s": round(med - off, 2)}
    with tempfile.TemporaryDirectory() as tmp:
        out["histogram_write"] = {name: histogram_write_s(name, Path(tmp), args.repeats)
                                  for name in filter(None, args.histogram_models.split(","))}
    print(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
