"""``hpcnn bench allreduce``: an allreduce size sweep (like nccl-tests' all_reduce_perf) and its α-β fit.

For each message size S (bytes, float32) every rank times ``iters`` allreduces after ``warmup``;
the reported time is the slowest rank's mean. As in nccl-tests:

    algbw = S / t                  busbw = algbw · 2(N−1)/N

busbw is comparable across rank counts (it is the bandwidth each link sees in a ring). The fit
assumes the ring model the scaling model (``hpcnn scale model``) uses:

    t(S) = 2(N−1)·α + 2(N−1)/N · S/β

a straight line t = a + b·S fitted by least squares on relative error (every size counts, not
only the largest), so α = a / (2(N−1)) (seconds, per-message latency of one link) and
β = 2(N−1)/N / b (bytes/s, link bandwidth). Two fallbacks keep both positive: no positive slope
(every size latency-bound, or one size only) takes b from the largest message, b = t/S there (all
of its time counted as transfer: a lower bound on β), with the intercept that fits best for that b;
an intercept ≤ 0 (noise on a fast link) takes the smallest message's time as the latency term.
JSON keys ``alpha_s`` and ``beta_bytes_per_s`` are what ``hpcnn scale`` reads.
"""
from __future__ import annotations

import logging
import os
import socket
import time

import torch
import torch.distributed as dist

from ..errors import ConfigError
from ..files import atomic_write_json
from ..tables import format_table
from .timing import device_sync, human_size, size_range

log = logging.getLogger("hpcnn.bench")
DEFAULT_SIZES = {"nccl": "1K..256M", "gloo": "1K..16M"}


def fit_alpha_beta(sizes: list[int], seconds: list[float], world_size: int) -> tuple[float, float]:
    """(α seconds, β bytes/s) of the ring model from measured (size, time) pairs; see module doc."""
    if world_size < 2:
        raise ValueError("an allreduce over one rank moves nothing: α and β need at least 2 ranks")
    if len(sizes) < 2:
        raise ValueError("the α-β fit needs at least two message sizes")
    # weighted least squares with weights 1/t²: minimises the relative residuals
    w = [1.0 / t**2 for t in seconds]
    sw = sum(w)
    mx = sum(wi * s for wi, s in zip(w, sizes)) / sw
    my = sum(wi * t for wi, t in zip(w, seconds)) / sw
    sxx = sum(wi * (s - mx) ** 2 for wi, s in zip(w, sizes))
    sxy = sum(wi * (s - mx) * (t - my) for wi, s, t in zip(w, sizes, seconds))
    b = sxy / sxx if sxx > 0 else 0.0
    if b <= 0:  # no bandwidth term visible: the largest message's time per byte (a lower bound on β)
        largest = max(range(len(sizes)), key=lambda i: sizes[i])
        b = seconds[largest] / sizes[largest]
    a = my - b * mx  # the weighted least-squares intercept for this slope
    if a <= 0:  # the line crosses zero (noise on a fast link): the smallest message's time is the latency term
        a = seconds[min(range(len(sizes)), key=lambda i: sizes[i])]
    n = world_size
    return a / (2 * (n - 1)), (2 * (n - 1) / n) / b


def sweep(sizes: list[int], iters: int, warmup: int, device: torch.device) -> list[dict]:
    """Time allreduces of each size on this process group; every rank gets the same rows."""
    n = dist.get_world_size()
    rows = []
    for size in sizes:
        x = torch.ones(max(1, size // 4), dtype=torch.float32, device=device)
        for _ in range(warmup):
            dist.all_reduce(x)
        device_sync(device)
        dist.barrier()
        t0 = time.perf_counter()
        for _ in range(iters):
            dist.all_reduce(x)
        device_sync(device)
        mine = torch.tensor([(time.perf_counter() - t0) / iters], dtype=torch.float64,
                            device=device if device.type == "cuda" else "cpu")
        dist.all_reduce(mine, op=dist.ReduceOp.MAX)
        t = float(mine.item())
        nbytes = x.numel() * 4
        algbw = nbytes / t
        rows.append({"bytes": nbytes, "size": human_size(nbytes), "count": x.numel(), "time_s": t,
                     "algbw_bytes_per_s": algbw, "busbw_bytes_per_s": algbw * 2 * (n - 1) / n})
    return rows


def run_allreduce(sizes: str | None = None, iters: int = 20, warmup: int = 5, backend: str = "auto",
                  out: str | os.PathLike | None = None, timeout_s: float = 300.0, world=None) -> dict | None:
    """Join the process group of this launch, sweep, fit; rank 0 returns (and writes) the JSON."""
    from ..dist import make_comm
    from ..env import detect_world
    from ..train.logs import setup_logging

    world = world or detect_world()
    setup_logging(world.rank)
    if world.world_size < 2:
        raise ConfigError("an allreduce sweep needs at least 2 ranks (one rank moves nothing)", "hpcnn bench allreduce",
                          "torchrun --nproc_per_node=2 -m hpcnn bench allreduce, or srun -n 2 ...")
    if iters < 1 or warmup < 0:
        raise ConfigError("need --iters >= 1 and --warmup >= 0", "hpcnn bench allreduce")
    device = torch.device("cpu")
    if backend in ("auto", "nccl") and torch.cuda.is_available():
        device = torch.device("cuda", world.local_rank % torch.cuda.device_count())
        torch.cuda.set_device(device)
    comm = make_comm(world, backend, device, timeout_s)
    try:
        chosen = size_range(sizes or DEFAULT_SIZES.get(comm.backend, "1K..16M"))
        rows = sweep(chosen, iters, warmup, device)
        alpha, beta = fit_alpha_beta([r["bytes"] for r in rows], [r["time_s"] for r in rows], world.world_size)
        hosts = comm.all_gather_object(socket.gethostname())
    except ValueError as err:
        raise ConfigError(str(err), "--sizes") from None
    comm.shutdown()
    if world.rank != 0:
        return None
    result = {"world_size": world.world_size, "backend": comm.backend, "device_type": device.type,
              "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
              "nodes": sorted(set(hosts)), "hosts_per_rank": hosts, "iters": iters, "warmup": warmup,
              "dtype": "float32", "rows": rows, "alpha_s": alpha, "beta_bytes_per_s": beta,
              "model": "ring: t = 2(N-1)*alpha + 2(N-1)/N * bytes/beta",
              "created": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
    if out is not None:
        atomic_write_json(out, result)
    return result


def table(result: dict) -> str:
    """nccl-tests-like text table plus the fit."""
    lines = [f"# allreduce, {result['world_size']} ranks, {result['backend']} on {result['device']}, "
             f"nodes {','.join(result['nodes'])}"]
    rows = [("size", "count", "time(us)", "algbw(GB/s)", "busbw(GB/s)")]
    rows += [(r["size"], r["count"], f"{r['time_s'] * 1e6:.1f}", f"{r['algbw_bytes_per_s'] / 1e9:.3f}",
              f"{r['busbw_bytes_per_s'] / 1e9:.3f}") for r in result["rows"]]
    lines.append(format_table(rows, align="rrrrr"))
    lines.append(f"# fit ({result['model']}): alpha {result['alpha_s'] * 1e6:.2f} us, "
                 f"beta {result['beta_bytes_per_s'] / 1e9:.3f} GB/s")
    return "\n".join(lines)


__all__ = ["DEFAULT_SIZES", "fit_alpha_beta", "run_allreduce", "sweep", "table"]
