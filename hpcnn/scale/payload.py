"""What every task of a scaling point runs: ``hpcnn bench`` on the point's config, JSON to its directory.

Data, not a closure (a config dict, an output path and the bench parameters), so submitit can
pickle it on the login node. Every rank calls ``bench_from_dict``; rank 0 writes the JSON
atomically. A point whose job dies leaves no JSON, and the next ``hpcnn scale`` resubmits it.

Importing this module must not import torch: only ``__call__`` imports the benchmark.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

BENCH_FILE = "bench.json"


@dataclass
class BenchPayload:
    """``bench_from_dict(config, out, data, warmup, steps, windows)`` on every rank of a point."""

    config: dict
    out: str
    data: str = "synthetic"
    warmup: int = 5
    steps: int = 20
    windows: int = 3

    def __call__(self) -> dict[str, Any]:
        from hpcnn.bench.run import bench_from_dict  # lazily: the login node may not have torch

        Path(self.out).parent.mkdir(parents=True, exist_ok=True)
        return bench_from_dict(self.config, self.out, data=self.data, warmup=self.warmup, steps=self.steps,
                               windows=self.windows)


__all__ = ["BENCH_FILE", "BenchPayload"]
