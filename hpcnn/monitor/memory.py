"""How large a batch fits in GPU memory, from `hpcnn bench` results at two or more batch sizes.

Peak memory is close to linear in the images of one forward pass: mem = fixed + per_image x batch,
where `fixed` (weights, gradients, optimizer state, workspace) does not grow with the batch. One
measurement cannot separate the two, so the run summary's growth factor (target / peak) is only a
lower bound; two batch sizes give both by a least-squares line, and the batch that fills the
target share of the GPU follows. `hpcnn memory BENCH.json BENCH.json ...` prints it.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from statistics import linear_regression

from ..errors import HpcnnError

# what must agree between bench results for one line to describe them all
SAME = ("model", "image_size", "precision", "channels_last", "compile", "device", "peak_memory_kind")


@dataclass
class MemoryFit:
    fixed_mib: float
    per_image_mib: float
    batches: list[int]

    def batch_that_fits(self, capacity_mib: float, target: float) -> int:
        """The largest batch (images per forward pass, per GPU) whose predicted peak stays within target x capacity."""
        return max(0, math.floor((target * capacity_mib - self.fixed_mib) / self.per_image_mib))


def fit_memory(points: list[tuple[float, float]], where: str = "bench results") -> MemoryFit:
    """Least-squares line through (batch, peak MiB) points; needs two different batch sizes and growth."""
    batches = sorted({b for b, _ in points})
    if len(batches) < 2:
        raise HpcnnError("per-image memory needs peak memory at two different batch sizes", where,
                         "run `hpcnn bench ... train.batch_size=B --out FILE` at a second batch size")
    slope, intercept = linear_regression([b for b, _ in points], [m for _, m in points])
    if slope <= 0:
        seen = ", ".join(f"{b:g}: {m:.0f} MiB" for b, m in sorted(points))
        raise HpcnnError(f"peak memory did not grow with the batch ({seen})", where,
                         "measure batch sizes further apart")
    return MemoryFit(intercept, slope, [int(b) for b in batches])


def bench_points(results: list[dict], where: str = "bench results") -> tuple[list[tuple[float, float]], float | None]:
    """(images per forward pass per GPU, peak MiB) of each GPU bench result, and the GPU's capacity if known."""
    if any(not isinstance(r, dict) or "peak_memory_mib" not in r or "batch_size_per_rank" not in r for r in results):
        raise HpcnnError("a file is not an `hpcnn bench` result (no peak_memory_mib / batch_size_per_rank)", where,
                         "pass files written by `hpcnn bench --out`")
    if any(r.get("device_type") != "cuda" for r in results):
        raise HpcnnError("a bench result was not measured on a GPU", where, "use results of `hpcnn bench` on a GPU")
    for key in SAME:
        values = {json.dumps(r.get(key)) for r in results}
        if len(values) > 1:
            raise HpcnnError(f"the bench results differ in {key} ({', '.join(sorted(values))})", where,
                             "compare results of one job that differ only in the batch size")
    points = [(r["batch_size_per_rank"] / max(1, r.get("accumulate") or 1), float(r["peak_memory_mib"]))
              for r in results]
    totals = [g["mem_total_mib"] for r in results for s in ((r.get("gpu") or {}).get("per_rank") or []) if s
              for g in s.get("per_gpu", []) if g.get("mem_total_mib")]
    return points, (min(totals) if totals else None)


def memory_advice(paths: list[Path], capacity_mib: float | None = None, target: float = 0.85) -> dict:
    """The fit and the batch that fits, from bench JSON files."""
    results = []
    for path in paths:
        try:
            results.append(json.loads(Path(path).read_text()))
        except (OSError, ValueError) as err:
            raise HpcnnError(f"cannot read bench result {path}: {err}", "hpcnn memory",
                             "pass files written by `hpcnn bench --out`") from None
    points, capacity = bench_points(results, "hpcnn memory")
    fit = fit_memory(points, "hpcnn memory")
    capacity = capacity_mib or capacity
    if capacity is None:
        raise HpcnnError("the bench results do not say how much memory the GPU has (no NVML samples)",
                         "hpcnn memory", "pass --capacity-mib")
    return {"fixed_mib": round(fit.fixed_mib, 1), "per_image_mib": round(fit.per_image_mib, 3),
            "batches": fit.batches, "capacity_mib": capacity, "target_fraction": target,
            "batch_that_fits": fit.batch_that_fits(capacity, target),
            "peak_memory_kind": results[0].get("peak_memory_kind")}


__all__ = ["MemoryFit", "bench_points", "fit_memory", "memory_advice"]
