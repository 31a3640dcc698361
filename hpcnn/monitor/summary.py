"""Per-job GPU summary from gpu.jsonl, with advice a user can act on (jobstats-style thresholds)."""
from __future__ import annotations

import json
from pathlib import Path
from statistics import mean

# Thresholds in one place: (condition on the summary, advice).
LOW_UTIL_PERCENT = 50
LOW_MEMORY_FRACTION = 0.2
NOTES = [
    (lambda s: s["util_mean_percent"] is not None and s["util_mean_percent"] < 15,
     "the GPUs were almost idle: is the job really using CUDA (train.device: auto/cuda)?"),
    (lambda s: s["util_mean_percent"] is not None and 15 <= s["util_mean_percent"] < LOW_UTIL_PERCENT,
     "GPU utilisation was low: the input pipeline may starve the GPU — raise data.num_workers, keep data in "
     "memory, or use a larger batch"),
    (lambda s: s["mem_max_fraction"] is not None and s["mem_max_fraction"] < LOW_MEMORY_FRACTION,
     "less than 20% of GPU memory was used: a larger train.batch_size (with schedule.scale_lr: linear) may "
     "train faster"),
]


def _values(rows, key):
    return [r[key] for r in rows if r.get(key) is not None]


def summarize(run_dir: Path, images: int | None = None) -> dict | None:
    """Mean/max utilisation, memory, power, temperature; energy from the counter (or power x time).

    Reads every rank's ``gpu/rank*.jsonl`` in the run directory; None when no GPU was sampled.
    """
    rows = []
    for path in sorted(Path(run_dir).glob("gpu/rank*.jsonl")):
        rows += [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    if not rows:
        return None
    per_gpu: dict[int, list[dict]] = {}
    for r in rows:
        per_gpu.setdefault((r.get("host"), r["index"]), []).append(r)
    energy = 0.0
    for samples in per_gpu.values():
        counters = _values(samples, "energy_j")
        if len(counters) >= 2:
            energy += counters[-1] - counters[0]
        else:
            powers = _values(samples, "power_w")
            if powers:
                energy += mean(powers) * (samples[-1]["time"] - samples[0]["time"])
    util, mem = _values(rows, "util_percent"), _values(rows, "mem_used_mib")
    totals = _values(rows, "mem_total_mib")
    summary = {
        "gpus": len(per_gpu),
        "samples": len(rows),
        "seconds": max(r["time"] for r in rows) - min(r["time"] for r in rows),
        "util_mean_percent": mean(util) if util else None,
        "util_max_percent": max(util) if util else None,
        "mem_max_mib": max(mem) if mem else None,
        "mem_max_fraction": max(m / t for m, t in zip(mem, totals)) if mem and totals else None,
        "power_mean_w": mean(_values(rows, "power_w")) if _values(rows, "power_w") else None,
        "temp_max_c": max(_values(rows, "temp_c")) if _values(rows, "temp_c") else None,
        "energy_j": energy,
        "energy_per_image_j": energy / images if images else None,
    }
    summary["notes"] = [note for cond, note in NOTES if cond(summary)]
    return summary
