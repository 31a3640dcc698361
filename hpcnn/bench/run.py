"""``hpcnn bench``: a training config's throughput and step-time split, on every rank, any launcher.

    warm-up steps -> K timed windows of N steps (the unmodified training step, ``train_epoch``)
    -> one instrumented pass of N steps (the split, see ``split.py``) -> rank 0 writes JSON

Images/s of a window = global batch x steps / the slowest rank's window time, so the figure is
the job's, not one rank's. ``bench_from_dict`` is the contract ``hpcnn scale`` relies on:
call it on every rank of a job; rank 0 writes ``out`` atomically and returns the dict, the
other ranks return None. Keys are listed in docs/bench.md.
"""
from __future__ import annotations

import contextlib
import logging
import os
import platform
import resource
import socket
import statistics
import tempfile
import time
from itertools import islice
from pathlib import Path

import torch

from .. import __version__
from ..config import from_dict
from ..errors import ConfigError
from ..files import atomic_write_json
from ..train.loop import train_epoch
from .split import instrumented_steps
from .timing import device_sync, spread
from .workload import build_workload, count_classes, ddp_bucket_bytes, gradient_bytes, real_source, synthetic_source

log = logging.getLogger("hpcnn.bench")
DATA_MODES = ("synthetic", "real")


def bench_from_dict(config: dict, out: str | os.PathLike, data: str = "synthetic", warmup: int = 5,
                    steps: int = 20, windows: int = 3) -> dict | None:
    """Benchmark a job config given as plain data (Slurm payloads, ``hpcnn scale``); see module doc."""
    return bench_job(from_dict(config, "bench config"), out, data, warmup, steps, windows)


def bench_job(cfg, out: str | os.PathLike | None = None, data: str = "synthetic", warmup: int = 5,
              steps: int = 20, windows: int = 3, world=None) -> dict | None:
    """Detect the world, join the process group, measure; rank 0 returns (and writes) the result."""
    from ..run import bootstrap

    if data not in DATA_MODES:
        raise ConfigError(f"unknown bench data mode {data!r}", "--data", "use synthetic or real")
    if warmup < 0 or steps < 1 or windows < 1:
        raise ConfigError("need warmup >= 0, steps >= 1 and windows >= 1", "hpcnn bench",
                          f"got warmup={warmup} steps={steps} windows={windows}")
    world, device, comm = bootstrap(cfg, world, log_to_stderr=True)  # stdout carries only the JSON
    try:
        result = _measure(cfg, comm, device, data, warmup, steps, windows)
        if comm.is_main:
            if out is not None:
                atomic_write_json(out, result)
            st = result["step_time_s"]
            log.info("bench %s: %.1f images/s (median of %d windows, %d rank(s)); step %.1f ms, data wait %.0f%%; "
                     "split: compute %.1f ms, comm %s, optimizer %.1f ms%s", cfg.name,
                     result["images_per_second"]["median"], windows, comm.world_size, 1e3 * st["total"],
                     100 * st["data"] / st["total"], 1e3 * st["compute"],
                     "n/a" if st["comm"] is None else f"{1e3 * st['comm']:.1f} ms", 1e3 * st["optimizer"],
                     f" -> {out}" if out is not None else "")
    except Exception:
        if hasattr(comm, "fail"):
            comm.fail("benchmark failed on this rank")
        raise
    comm.shutdown()
    return result if comm.is_main else None


def _pipeline(cfg, comm, device):
    """The config's own input pipeline: (normalisation, endless batch source, decode mode, number of classes)."""
    from ..data import jobscope
    from ..data.gpu_decode import resolve_decode, train_loader
    from ..data.loaders import RankBatchSampler
    from ..train.inputs import job_inputs
    from ..train.setup import batch_sizes

    global_batch, _ = batch_sizes(cfg, comm.world_size)
    resolve_decode(cfg.data, device)  # a gpu request without a GPU fails before any data loads
    with jobscope.bound(comm, None):  # as in training: a folder listed on one rank, sets held once per node
        splits, normalize = job_inputs(cfg, announce=comm.is_main)
    sampler = RankBatchSampler(len(splits.train), global_batch, comm.rank, comm.world_size, cfg.seed)
    pin = cfg.data.pin_memory and device.type == "cuda"
    loader, decode = train_loader(splits.train, sampler, cfg.data, device, pin)
    return normalize, real_source(loader, sampler), decode, len(splits.classes)


def _measure(cfg, comm, device, data, warmup, steps, windows) -> dict:
    normalize = decode = None
    num_classes = count_classes(cfg.data)
    if data == "real":
        normalize, source, decode, num_classes = _pipeline(cfg, comm, device)
    work = build_workload(cfg, comm, device, num_classes, normalize, steps)
    if data == "synthetic":
        source = synthetic_source(cfg, work.local_batch, num_classes, device, cfg.seed + comm.rank)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    with _gpu_telemetry(device) as telemetry:
        never = lambda: False  # noqa: E731
        quiet = lambda *a: None  # noqa: E731
        if warmup:
            train_epoch(work.train_model, work.optimizer, islice(source, warmup), work.ctx, 0, 0, never, quiet)
        seconds, data_s = [], []
        for w in range(windows):
            comm.barrier()
            device_sync(device)
            t0 = time.perf_counter()
            stats = train_epoch(work.train_model, work.optimizer, islice(source, steps), work.ctx, 1 + w, 0,
                                never, quiet)
            device_sync(device)
            seconds.append(time.perf_counter() - t0)
            data_s.append(stats.data_seconds)
    buckets = ddp_bucket_bytes(work.wrapped)
    split = instrumented_steps(work, source, steps, buckets)
    per_rank = comm.all_gather_object({
        "host": socket.gethostname(), "seconds": seconds, "data_seconds": data_s, "split": split,
        "peak_memory_mib": _peak_memory_mib(device), "gpu": telemetry["summary"]})
    return _result(cfg, comm, device, work, per_rank, data, decode, warmup, steps, windows, buckets)


def _result(cfg, comm, device, work, per_rank, data, decode, warmup, steps, windows, buckets) -> dict:
    slowest = [max(r["seconds"][w] for r in per_rank) for w in range(windows)]
    ips = [work.global_batch * steps / s for s in slowest]
    total = statistics.median(slowest) / steps
    split = max((r["split"] for r in per_rank), key=lambda sp: sp["split_total"])  # the slowest rank's split
    hosts = [r["host"] for r in per_rank]
    return {
        "config_name": cfg.name, "hpcnn_version": __version__, "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "data": data, "decode": decode, "model": cfg.model.name, "image_size": cfg.data.image_size,
        "num_classes": work.num_classes,
        "images_per_second": spread(ips), "images_per_second_windows": ips, "window_seconds": slowest,
        "step_time_s": {"total": total,
                        "data": statistics.median(max(r["data_seconds"][w] for r in per_rank)
                                                  for w in range(windows)) / steps,
                        "compute": split["compute"], "comm": split["comm"], "optimizer": split["optimizer"],
                        "split_data": split["data"], "split_total": split["split_total"],
                        "overlap_hidden": max(0.0, split["split_total"] - total)},
        "warmup_steps": warmup, "steps_per_window": steps, "windows": windows,
        "world_size": comm.world_size, "backend": comm.backend, "nodes": sorted(set(hosts)),
        "hosts_per_rank": hosts, "device": _device_name(device), "device_type": device.type,
        "batch_size_per_rank": work.local_batch, "global_batch_size": work.global_batch,
        "accumulate": cfg.train.accumulate,
        "precision": cfg.train.amp if device.type == "cuda" and cfg.train.amp != "none" else "fp32",
        "channels_last": cfg.train.channels_last, "compile": cfg.train.compile,
        "gradient_bytes": gradient_bytes(work.raw_model), "bucket_bytes": buckets,
        "peak_memory_mib": max(r["peak_memory_mib"] for r in per_rank),
        "peak_memory_kind": "cuda_max_allocated" if device.type == "cuda" else "process_max_rss",
        "gpu": _gpu_block([r["gpu"] for r in per_rank]),
    }


def _peak_memory_mib(device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def _device_name(device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"cpu ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)"


def _gpu_block(summaries: list) -> dict | None:
    got = [s for s in summaries if s]
    if not got:
        return None
    values = lambda key: [s[key] for s in got if s.get(key) is not None]  # noqa: E731
    mean = lambda key: statistics.fmean(values(key)) if values(key) else None  # noqa: E731
    return {"util_mean_percent": mean("util_mean_percent"), "mem_max_mib": max(values("mem_max_mib"), default=None),
            "power_mean_w": mean("power_mean_w"), "energy_j": sum(values("energy_j")), "per_rank": summaries}


@contextlib.contextmanager
def _gpu_telemetry(device, interval_s: float = 0.5):
    """NVML samples of this rank's GPU during warm-up and windows (hpcnn.monitor); nothing on CPU.
    Yields a dict whose "summary" the samples fill in when the block ends. Stopping the sampler closes
    its NVML reader (event sets freed, nvmlShutdown)."""
    telemetry = {"summary": None}
    if device.type != "cuda":
        yield telemetry
        return
    from ..monitor import GpuSampler, summarize
    from ..train.callbacks import cuda_uuid

    with tempfile.TemporaryDirectory(prefix="hpcnn-bench-gpu-") as tmp:
        (Path(tmp) / "gpu").mkdir()
        # by UUID, as the trainer does: CUDA's device numbers need not be NVML's
        sampler = GpuSampler(Path(tmp) / "gpu" / "rank0.jsonl", interval_s, cuda_ordinal=device.index or 0,
                             uuid=cuda_uuid(device))
        started = sampler.start()
        try:
            yield telemetry
        finally:
            if started:
                sampler.stop()
                telemetry["summary"] = summarize(Path(tmp))


__all__ = ["DATA_MODES", "bench_from_dict", "bench_job"]
