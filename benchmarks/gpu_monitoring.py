"""What GPU monitoring costs: the same training job with monitoring on and off, alternated, in one run.

    .venv/bin/python benchmarks/gpu_monitoring.py [--rounds 2] [--interval 5] [--out gpu_out/gpu_monitoring.json]

On a GPU: ``rounds`` x (on, off) runs of one compute-bound job (ResNet-50, 128², batch 256, bf16,
channels_last, synthetic data, ~300 steps), in ABBA order; the ratio is median images/s with monitoring over
median without (1.0 = free; the issue's bar is >= 0.99 at the default 5 s interval). The JSON
also carries the monitored runs' GPU summary (utilisation in training, mean power, energy per
image) and the paths of one run's `hpcnn report` PNGs, copied next to ``--out``.

Always: the sampler's own cost per sample (wall and thread-CPU time of one ``GpuSampler.write``:
NVML queries + JSON + append), on the real NVML where there is a GPU, else on the stand-in
(tests/support/fake_pynvml.py), which measures hpcnn's share without the driver's.
With a driver also ``driver_query_cost``: the wall time of the four cheap queries alone
(utilisation + memory + power + temperature through pynvml, median of 5 x 2000) — the driver's
share that docs/monitoring.md quotes once a GPU run has recorded it.
Without CUDA the training part prints ``{"skipped": ...}``.
"""
from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

# ~300 steps of a compute-bound job (~6 s of training on an H100/H200); small data at 128² so generating it
# stays at a few seconds per run and the whole benchmark fits gpu_all.sh's 120 s step.
JOB = ["model.name=resnet50", "data.image_size=128", "train.batch_size=256", "train.amp=bf16",
       "train.channels_last=true", "optim.name=sgd", "optim.weight_decay=0.0001", "train.deterministic=false",
       "data.n_train=2560", "data.n_val=256", "data.n_test=0", "data.num_workers=4", "train.epochs=30",
       "train.plots=false", "train.tensorboard=false", "train.log_every=10", "schedule.warmup_epochs=0",
       "train.checkpoint.every_epochs=1000", "train.checkpoint.keep_last=1", "train.checkpoint.keep_best=false",
       "train.early_stopping.patience=0"]


def sampler_cost(samples: int = 2000) -> dict:
    """Microseconds one sample of one GPU costs (median of 5 repeats)."""
    from hpcnn.monitor import GpuSampler, PositionTag, open_nvml

    nvml, source = open_nvml(cuda_ordinal=0), "pynvml (real driver)"
    if nvml is None:
        from tests.support import fake_pynvml

        nvml, source = open_nvml(fake_pynvml, cuda_ordinal=0), "stand-in pynvml (no driver: hpcnn's share only)"
    walls, cpus = [], []
    with tempfile.TemporaryDirectory() as tmp:
        tag = PositionTag(stage="train", phase="train", epoch=0, step=0)
        sampler = GpuSampler(Path(tmp) / "rank0.jsonl", interval_s=3600, nvml=nvml, tag=tag, rank=0)
        sampler._file = (Path(tmp) / "rank0.jsonl").open("a")
        n = samples if "stand-in" in source else max(20, samples // 100)  # real PCIe reads take 2 x 20 ms
        for _ in range(5):
            w0, c0 = time.perf_counter(), time.thread_time()
            for i in range(n):
                tag.move(step=i)
                sampler.write()
            walls.append((time.perf_counter() - w0) / n * 1e6)
            cpus.append((time.thread_time() - c0) / n * 1e6)
        sampler._file.close()
    nvml.close()
    wall, cpu = statistics.median(walls), statistics.median(cpus)
    return {"nvml": source, "gpus_per_sample": len(nvml.gpus), "wall_us_per_sample": round(wall, 1),
            "cpu_us_per_sample": round(cpu, 1), "cpu_fraction_at_5s": cpu / 5e6}


def driver_query_cost(calls: int = 2000) -> dict:
    """Microseconds of utilisation + memory + power + temperature on the real driver (median of 5 repeats)."""
    from hpcnn.monitor.nvml import load_nvml

    lib = load_nvml()
    if lib is None:
        return {"skipped": "nvidia-ml-py is not installed"}
    try:
        lib.nvmlInit()
    except Exception as err:
        return {"skipped": f"no NVIDIA driver: {err}"}
    try:
        handle = lib.nvmlDeviceGetHandleByIndex(0)
        sensor = lib.NVML_TEMPERATURE_GPU
        walls = []
        for _ in range(5):
            t0 = time.perf_counter()
            for _ in range(calls):
                lib.nvmlDeviceGetUtilizationRates(handle)
                lib.nvmlDeviceGetMemoryInfo(handle)
                lib.nvmlDeviceGetPowerUsage(handle)
                lib.nvmlDeviceGetTemperature(handle, sensor)
            walls.append((time.perf_counter() - t0) / calls * 1e6)
        name = lib.nvmlDeviceGetName(handle)
    finally:
        lib.nvmlShutdown()
    return {"queries": ["utilization", "memory", "power", "temperature"], "gpu_name": str(name),
            "wall_us_per_4_queries": round(statistics.median(walls), 2), "repeats_us": [round(w, 2) for w in walls]}


def one_run(monitor: bool, interval: float, root: Path, index: int) -> dict:
    from hpcnn.config import load_job
    from hpcnn.run import run_job

    cfg = load_job(None, [*JOB, f"monitor.enabled={str(monitor).lower()}", f"monitor.interval_s={interval}",
                          f"train.runs_dir={root}"])
    result = run_job(cfg, root / f"run{index}-{'on' if monitor else 'off'}")
    return {"monitor": monitor, "run_dir": str(result.run_dir),
            "images_per_second": result.summary["images_per_second"], "gpu": result.summary.get("gpu")}


def cuda_available() -> bool:
    import torch

    return torch.cuda.is_available()


def training_overhead(rounds: int, interval: float, out: Path | None) -> dict:
    if not cuda_available():
        return {"skipped": "no CUDA GPU: the on/off training comparison needs one"}
    runs = []
    with tempfile.TemporaryDirectory(prefix="hpcnn-gpumon-") as tmp:
        root = Path(tmp)
        one_run(True, interval, root, -1)  # warm-up: cudnn autotuning, allocator
        order = [True, False, False, True] * ((rounds + 1) // 2)
        for i, monitor in enumerate(order[:2 * rounds]):
            runs.append(one_run(monitor, interval, root, i))
        on = [r["images_per_second"] for r in runs if r["monitor"]]
        off = [r["images_per_second"] for r in runs if not r["monitor"]]
        gpu = next((r["gpu"] for r in runs if r["monitor"] and r["gpu"]), None)
        if gpu is None:
            return {"error": "monitored runs have no GPU summary (is nvidia-ml-py installed?)",
                    "images_per_second_on": on, "images_per_second_off": off}
        report = {}
        monitored = next(Path(r["run_dir"]) for r in runs if r["monitor"])
        if out is not None:
            from hpcnn.monitor.report import make_report

            md, pngs = make_report(monitored, out.parent / "gpu_monitoring_report")
            report = {"markdown": str(md), "pngs": [str(p) for p in pngs]}
            shutil.copy(monitored / "summary.json", out.parent / "gpu_monitoring_report" / "summary.json")
    train = gpu["stages"].get("train", {})
    return {"job": JOB, "interval_s": interval, "rounds": rounds,
            "order": ["on" if r["monitor"] else "off" for r in runs],
            "images_per_second_on": on, "images_per_second_off": off,
            "median_on": statistics.median(on), "median_off": statistics.median(off),
            "ratio_on_over_off": statistics.median(on) / statistics.median(off),
            "gpu_name": gpu["per_gpu"][0]["name"], "util_train_mean_percent": train.get("util_mean_percent"),
            "util_train_p5_percent": train.get("util_p5_percent"), "power_mean_w": gpu["power_mean_w"],
            "energy_per_image_j": gpu["energy_per_image_j"], "images_per_joule": gpu["images_per_joule"],
            "mem_max_fraction": gpu["mem_max_fraction"], "advice": [a["rule"] for a in gpu["advice"]],
            "report": report}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=2, help="(on, off) pairs, alternated ABBA (default: 2)")
    ap.add_argument("--interval", type=float, default=5.0, help="monitor.interval_s (default: 5, the default)")
    ap.add_argument("--out", type=Path, help="also write the JSON here (report PNGs go next to it)")
    args = ap.parse_args()
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
    result = {"benchmark": "gpu_monitoring", "sampler_cost": sampler_cost(), "driver_query_cost": driver_query_cost()}
    if args.out:  # the cheap figures survive a training part cut short by gpu_all.sh's step timeout
        args.out.write_text(json.dumps({**result, "training": "not finished"}, indent=2) + "\n")
    result.update(training_overhead(args.rounds, args.interval, args.out))
    text = json.dumps(result, indent=2)
    print(text)
    if args.out:
        args.out.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
