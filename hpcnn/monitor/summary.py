"""The per-job GPU summary across nodes: every rank's series from the run directory, one dict.

Time is attributed sample by sample: a row stands for the time until the next row of the same
GPU, so throttle seconds and per-stage time are sums of those intervals. Utilisation per stage
(train, eval, checkpoint, test) has the mean and the 5th percentile (how bad the bad stretches
were). The slowest GPU is the one with the lowest mean SM clock in training; it is a straggler
when that clock is below ``STRAGGLER_CLOCK_RATIO`` x the median of the others.
"""
from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from statistics import mean, median

from .advice import advise, limit
from .series import read_series


def _values(rows, key):
    return [r[key] for r in rows if isinstance(r.get(key), (int, float))]


def percentile(values: list[float], q: float) -> float | None:
    """Nearest-rank percentile (q in 0..100)."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[max(0, min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1))))]


def _intervals(rows: list[dict]) -> list[float]:
    """Seconds each row stands for: until the next row; the last one gets the median interval."""
    gaps = [max(0.0, b["time"] - a["time"]) for a, b in zip(rows, rows[1:])]
    return gaps + [median(gaps) if gaps else 0.0]


def _energy(rows: list[dict], dts: list[float]) -> float:
    counters = _values(rows, "energy_j")
    if len(counters) >= 2:
        return max(0.0, counters[-1] - counters[0])
    return sum(r["power_w"] * dt for r, dt in zip(rows, dts) if isinstance(r.get("power_w"), (int, float)))


def _r(x, digits=1):
    return None if x is None else round(x, digits)


def _mean(values: list[float]) -> float | None:
    return _r(mean(values)) if values else None


def _gpu_summary(host: str, index: int, rows: list[dict]) -> dict:
    dts = _intervals(rows)
    train = [(r, dt) for r, dt in zip(rows, dts) if r.get("stage", "train") == "train"]
    train_rows = [r for r, _ in train] or rows
    throttle: dict[str, float] = defaultdict(float)
    for r, dt in train:
        for reason in r.get("throttle") or []:
            throttle[reason] += dt
    util = _values(train_rows, "util_percent")
    ecc_c, ecc_u = _values(rows, "ecc_corrected"), _values(rows, "ecc_uncorrected")
    return {
        "host": host, "gpu": index, "name": rows[-1].get("name"),
        "util_mean_percent": _mean(util),
        "util_p5_percent": _r(percentile(util, 5)),
        "mem_max_mib": max(_values(rows, "mem_used_mib"), default=None),
        "mem_total_mib": max(_values(rows, "mem_total_mib"), default=None),
        "power_mean_w": _mean(_values(rows, "power_w")),
        "power_limit_w": max(_values(rows, "power_limit_w"), default=None),
        "temp_max_c": max(_values(rows, "temp_c"), default=None),
        "sm_clock_mhz": _mean(_values(train_rows, "sm_clock_mhz")),
        "energy_j": _r(_energy(rows, dts)),
        "train_seconds": _r(sum(dt for _, dt in train)),
        "throttle_seconds": {k: _r(v) for k, v in sorted(throttle.items())},
        "ecc_corrected": (ecc_c[-1] - ecc_c[0]) if ecc_c else None,
        "ecc_uncorrected": (ecc_u[-1] - ecc_u[0]) if ecc_u else None,
        "xid": sorted({x for r in rows for x in r.get("xid") or []}),
    }


def _stages(series: dict) -> dict:
    """{stage: {seconds, util_mean_percent, util_p5_percent}}; seconds are per GPU (averaged over GPUs)."""
    util: dict[str, list[float]] = defaultdict(list)
    seconds: dict[str, float] = defaultdict(float)
    for rows in series.values():
        for r, dt in zip(rows, _intervals(rows)):
            stage = r.get("stage", "train")
            seconds[stage] += dt
            if isinstance(r.get("util_percent"), (int, float)):
                util[stage].append(r["util_percent"])
    n = max(1, len(series))
    return {stage: {"seconds": _r(seconds[stage] / n), "util_mean_percent": _mean(util[stage]),
                    "util_p5_percent": _r(percentile(util[stage], 5))} for stage in seconds}


def _slowest(gpus: list[dict]) -> dict | None:
    timed = [g for g in gpus if g["sm_clock_mhz"]]
    if len(timed) < 2:
        return None
    slow = min(timed, key=lambda g: g["sm_clock_mhz"])
    others = median(g["sm_clock_mhz"] for g in timed if g is not slow)
    ratio = slow["sm_clock_mhz"] / others if others else 1.0
    return {"host": slow["host"], "gpu": slow["gpu"], "sm_clock_mhz": slow["sm_clock_mhz"], "median_mhz": others,
            "ratio": round(ratio, 3), "straggler": ratio < limit("STRAGGLER_CLOCK_RATIO")}


def _data_bound(series: dict, epochs: list[int]) -> dict | None:
    """Utilisation in training during the data-bound epochs (the input pipeline's cost, on the GPU)."""
    util = [r["util_percent"] for rows in series.values() for r in rows
            if r.get("stage", "train") == "train" and r.get("epoch") in epochs
            and isinstance(r.get("util_percent"), (int, float))]
    return {"epochs": epochs, "util_mean_percent": _mean(util), "util_p5_percent": _r(percentile(util, 5))}


def summarize(run_dir: Path, images: int | None = None, data_wait_fraction: float | None = None,
              num_workers: int | None = None, epoch_data_wait: dict[int, float] | None = None) -> dict | None:
    """The job's GPU summary from every rank's ``gpu/rank*.jsonl``; None when no GPU was sampled.

    ``images`` (trained), ``data_wait_fraction``, ``num_workers`` and ``epoch_data_wait``
    ({epoch: data wait share}) come from the trainer and feed energy per image and the advice.
    """
    series = read_series(run_dir)
    rows = [r for rs in series.values() for r in rs]
    if not rows:
        return None
    gpus = [_gpu_summary(host, index, rs) for (host, index), rs in series.items()]
    energy = sum(g["energy_j"] or 0.0 for g in gpus)
    util = _values(rows, "util_percent")
    fractions = [g["mem_max_mib"] / g["mem_total_mib"] for g in gpus if g["mem_max_mib"] and g["mem_total_mib"]]
    throttle: dict[str, float] = {}
    for g in gpus:
        for reason, t in g["throttle_seconds"].items():
            throttle[reason] = round(throttle.get(reason, 0.0) + t, 1)
    bound = sorted(e for e, f in (epoch_data_wait or {}).items() if f >= limit("INPUT_BOUND_DATA_WAIT"))
    summary = {
        "gpus": len(gpus),
        "nodes": len({g["host"] for g in gpus}),
        "samples": len(rows),
        "seconds": _r(max(r["time"] for r in rows) - min(r["time"] for r in rows)),
        "util_mean_percent": _mean(util),
        "util_max_percent": max(util, default=None),
        "mem_max_mib": max((g["mem_max_mib"] for g in gpus if g["mem_max_mib"] is not None), default=None),
        "mem_max_fraction": round(max(fractions), 3) if fractions else None,
        "power_mean_w": _mean(_values(rows, "power_w")),
        "temp_max_c": max(_values(rows, "temp_c"), default=None),
        "energy_j": _r(energy),
        "energy_wh": round(energy / 3600, 3),
        "energy_per_image_j": energy / images if images and energy else None,
        "images_per_joule": round(images / energy, 3) if images and energy else None,
        "stages": _stages(series),
        "throttle_seconds": dict(sorted(throttle.items())),
        "errors": {"ecc_corrected": sum(g["ecc_corrected"] or 0 for g in gpus),
                   "ecc_uncorrected": sum(g["ecc_uncorrected"] or 0 for g in gpus),
                   "ecc_uncorrected_on": [f"GPU {g['gpu']} on {g['host']}" for g in gpus if g["ecc_uncorrected"]],
                   "xid": [{"host": g["host"], "gpu": g["gpu"], "xid": x} for g in gpus for x in g["xid"]]},
        "slowest_gpu": _slowest(gpus),
        "data_bound": _data_bound(series, bound) if bound else None,
        "per_gpu": gpus,
    }
    summary["advice"] = advise(summary, data_wait_fraction, num_workers)
    return summary


def summary_lines(gpu: dict) -> list[str]:
    """The summary as the few lines printed at the end of a job (and in the report's Markdown)."""
    def f(x, d=0):
        return "n/a" if x is None else f"{x:,.{d}f}"

    lines = [f"GPU: {gpu['gpus']} GPU(s) on {gpu['nodes']} node(s), {gpu['samples']} samples over "
             f"{f(gpu['seconds'])} s; peak memory {f(gpu['mem_max_mib'])} MiB "
             f"({f((gpu['mem_max_fraction'] or 0) * 100)}%), energy {f(gpu['energy_wh'], 2)} Wh"
             + (f", {f(gpu['images_per_joule'], 2)} images/J" if gpu.get("images_per_joule") else "")]
    stages = ", ".join(f"{name} {f(s['util_mean_percent'])}% (p5 {f(s['util_p5_percent'])}%, {f(s['seconds'])} s)"
                       for name, s in gpu["stages"].items() if s["util_mean_percent"] is not None)
    if stages:
        lines.append(f"GPU utilisation by stage: {stages}")
    bound = gpu.get("data_bound")
    if bound:
        lines.append(f"data-bound epochs (input wait >= {limit('INPUT_BOUND_DATA_WAIT'):.0%}): "
                     f"{', '.join(str(e + 1) for e in bound['epochs'])}; GPU utilisation in them "
                     f"{f(bound['util_mean_percent'])}% (p5 {f(bound['util_p5_percent'])}%)")
    if gpu["throttle_seconds"]:
        lines.append("GPU throttling in training (GPU-seconds): "
                     + ", ".join(f"{k} {f(v, 1)}" for k, v in gpu["throttle_seconds"].items()))
    slow = gpu.get("slowest_gpu")
    if slow and slow["ratio"] < 0.999:
        lines.append(f"slowest GPU: {slow['gpu']} on {slow['host']}, SM clock {f(slow['sm_clock_mhz'])} MHz vs "
                     f"{f(slow['median_mhz'])} MHz median of the others"
                     + (" — a straggler" if slow["straggler"] else ""))
    errors = gpu["errors"]
    if errors["ecc_uncorrected"] or errors["xid"] or errors["ecc_corrected"]:
        lines.append(f"GPU errors: ECC corrected {errors['ecc_corrected']}, uncorrected {errors['ecc_uncorrected']}, "
                     f"XID events {len(errors['xid'])}")
    for item in gpu["advice"]:
        lines.append(f"GPU advice: {item['advice']} [{item['evidence']}]")
    return lines


__all__ = ["percentile", "summarize", "summary_lines"]
