"""Small timing helpers shared by the step benchmark and the allreduce sweep.

GPU work is asynchronous: a timer is only meaningful after ``device_sync``, so every
measured interval starts and ends with one (the only host syncs the benchmarks add).
"""
from __future__ import annotations

import re
import statistics
import time

import torch

_UNITS = {"": 1, "B": 1, "K": 2**10, "M": 2**20, "G": 2**30}


def device_sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class Stamps:
    """Contiguous timestamps of one step: the intervals between them sum to the step's wall time."""

    def __init__(self, device: torch.device):
        self.device = device
        self.times: list[float] = []

    def mark(self) -> None:
        device_sync(self.device)
        self.times.append(time.perf_counter())

    def intervals(self) -> list[float]:
        return [b - a for a, b in zip(self.times, self.times[1:])]


def spread(values: list[float]) -> dict:
    """Median, min and max of a list (the spread over timed windows)."""
    return {"median": statistics.median(values), "min": min(values), "max": max(values)}


def parse_size(text: str) -> int:
    """'64', '1K', '256M', '1G' -> bytes (powers of two, like nccl-tests)."""
    m = re.fullmatch(r"\s*(\d+)\s*([KMGB]?)B?\s*", text.upper())
    if not m:
        raise ValueError(f"not a size: {text!r} (use e.g. 1K, 64M, 1G)")
    return int(m.group(1)) * _UNITS[m.group(2)]


def size_range(text: str) -> list[int]:
    """'1K..256M' -> 1K, 2K, 4K, ... 256M (doubling); 'A,B,C' -> exactly those."""
    if ".." in text:
        lo, hi = (parse_size(t) for t in text.split("..", 1))
        if lo <= 0 or hi < lo:
            raise ValueError(f"bad size range {text!r}: need 0 < low <= high")
        sizes = []
        while lo <= hi:
            sizes.append(lo)
            lo *= 2
        return sizes
    return [parse_size(t) for t in text.split(",") if t.strip()]


def human_size(n: int) -> str:
    for unit, factor in (("G", 2**30), ("M", 2**20), ("K", 2**10)):
        if n >= factor and n % factor == 0:
            return f"{n // factor}{unit}"
    return str(n)
