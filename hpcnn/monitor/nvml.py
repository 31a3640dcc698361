"""A narrow NVML reader: device handles cached once, cheap queries only (no process lists).

Fields a GPU or driver does not support read as None instead of raising (nvitop's NA idea).
``open_nvml()`` returns None where there is no NVIDIA driver, e.g. on CPU machines.
"""
from __future__ import annotations

import logging
import os
import time
from typing import NamedTuple

log = logging.getLogger("hpcnn.monitor")


class GpuSample(NamedTuple):
    time: float                   # seconds since the epoch
    index: int                    # NVML device index
    util_percent: float | None    # SM busy time, %
    mem_used_mib: float | None
    mem_total_mib: float | None
    power_w: float | None
    energy_j: float | None        # total energy counter since driver load (Volta and newer)
    temp_c: float | None
    sm_clock_mhz: float | None


def _visible_indices(count: int) -> list[int]:
    """NVML indices of the GPUs this process may use (CUDA_VISIBLE_DEVICES, when numeric)."""
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is None or visible == "":
        return list(range(count))
    out = []
    for item in visible.split(","):
        item = item.strip()
        if item.isdigit() and int(item) < count:
            out.append(int(item))
    return out or list(range(count))


class Nvml:
    """Reads samples from the GPUs visible to this process."""

    def __init__(self, lib, indices: list[int]):
        self.lib = lib
        self.indices = indices
        self.handles = [lib.nvmlDeviceGetHandleByIndex(i) for i in indices]
        self.names = [self._call(lib.nvmlDeviceGetName, h) for h in self.handles]

    def _call(self, fn, *args):
        try:
            return fn(*args)
        except Exception:  # NVMLError_NotSupported and friends: "not applicable"
            return None

    def sample(self) -> list[GpuSample]:
        now, lib, out = time.time(), self.lib, []
        for index, h in zip(self.indices, self.handles):
            util = self._call(lib.nvmlDeviceGetUtilizationRates, h)
            mem = self._call(lib.nvmlDeviceGetMemoryInfo, h)
            power = self._call(lib.nvmlDeviceGetPowerUsage, h)
            energy = self._call(lib.nvmlDeviceGetTotalEnergyConsumption, h)
            temp = self._call(lib.nvmlDeviceGetTemperature, h, getattr(lib, "NVML_TEMPERATURE_GPU", 0))
            clock = self._call(lib.nvmlDeviceGetClockInfo, h, getattr(lib, "NVML_CLOCK_SM", 1))
            out.append(GpuSample(
                now, index, float(util.gpu) if util is not None else None,
                mem.used / 2**20 if mem is not None else None, mem.total / 2**20 if mem is not None else None,
                power / 1000.0 if power is not None else None, energy / 1000.0 if energy is not None else None,
                float(temp) if temp is not None else None, float(clock) if clock is not None else None))
        return out


def open_nvml(lib=None, cuda_ordinal: int | None = None) -> Nvml | None:
    """NVML for the visible GPUs (or just the one with this CUDA ordinal), or None without a driver."""
    if lib is None:
        try:
            import pynvml as lib
        except ImportError:
            return None
    try:
        lib.nvmlInit()
        count = lib.nvmlDeviceGetCount()
    except Exception as err:  # NVMLError_LibraryNotFound on machines without a driver
        log.debug("NVML unavailable: %s", err)
        return None
    if count == 0:
        return None
    visible = _visible_indices(count)
    if cuda_ordinal is not None and cuda_ordinal < len(visible):
        visible = [visible[cuda_ordinal]]
    return Nvml(lib, visible)
