"""A narrow NVML reader: device handles cached once, cheap queries only (no per-process lists).

``open_nvml()`` returns None where there is no NVIDIA driver (CPU machines, CI). A field that
a GPU or driver does not support is absent from the row, and after its first "not supported"
it is not asked again. Only the job's own GPUs are opened: the UUID / CUDA ordinal a rank
trains on, else the allocation in ``CUDA_VISIBLE_DEVICES`` (set by Slurm for every step).

Testing hook: ``HPCNN_NVML_MODULE=tests.support.fake_pynvml`` makes hpcnn import that module
instead of ``pynvml`` (nvidia-ml-py). Tests use it because no GPU exists on CI; everything
after the import is the real code path.
"""
from __future__ import annotations

import importlib
import logging
import os
import socket
import time

from .fields import throttle_words

log = logging.getLogger("hpcnn.monitor")
NVML_MODULE_ENV = "HPCNN_NVML_MODULE"
_MIB = 2**20
# NVML return codes after which a field is never asked again on that GPU: not supported, no permission.
_PERMANENT = (3, 4)
_XID_EVENTS = 8  # nvmlEventTypeXidCriticalError
_ALL_LINKS = 0xFFFFFFFF


def nvml_module_name() -> str:
    return os.environ.get(NVML_MODULE_ENV) or "pynvml"


def load_nvml():
    """The NVML Python module (pynvml from nvidia-ml-py, or the testing stand-in), None if not installed."""
    try:
        return importlib.import_module(nvml_module_name())
    except ImportError:
        return None


def allocated_gpus(env=None) -> list[str]:
    """The GPUs this process may use, from CUDA_VISIBLE_DEVICES (indices or UUIDs); [] = not restricted.

    Slurm exports its GPU allocation there for every step (also an ``srun --overlap`` step), so
    this is "the job's GPUs on this node" without reading Slurm's own variables (env/ owns those).
    """
    value = (os.environ if env is None else env).get("CUDA_VISIBLE_DEVICES") or ""
    return [item.strip() for item in value.split(",") if item.strip()]


class Gpu:
    """One device: its handle and the facts that never change, opened once."""

    def __init__(self, lib, index: int, handle):
        self.lib, self.index, self.handle = lib, index, handle
        self.off: set[str] = set()          # fields this GPU does not support
        self.name = self.ask("name", lib.nvmlDeviceGetName, handle)
        if isinstance(self.name, bytes):
            self.name = self.name.decode(errors="replace")
        self.events = self._xid_events()
        self._links_prev: tuple[float, int, int] | None = None

    def ask(self, field: str, fn, *args):
        """fn(*args), or None when unsupported (then never asked again) or failing this time."""
        if field in self.off:
            return None
        try:
            return fn(*args)
        except Exception as err:  # NVMLError_NotSupported, _NoPermission, _GpuIsLost, ...
            if getattr(err, "value", None) in _PERMANENT or not hasattr(err, "value"):
                self.off.add(field)
            return None

    def _xid_events(self):
        lib = self.lib
        if not hasattr(lib, "nvmlEventSetCreate"):
            return None
        try:
            events = lib.nvmlEventSetCreate()
            lib.nvmlDeviceRegisterEvents(self.handle, getattr(lib, "nvmlEventTypeXidCriticalError", _XID_EVENTS),
                                         events)
            return events
        except Exception:  # not supported, or no permission (non-root on some drivers)
            return None

    def xids(self, limit: int = 16) -> list[int]:
        """XID codes that arrived since the last call (non-blocking)."""
        out = []
        while self.events is not None and len(out) < limit:
            try:
                data = self.lib.nvmlEventSetWait(self.events, 0)
            except Exception:  # NVMLError_Timeout: no event pending
                break
            out.append(int(data.eventData))
        return out

    def nvlink(self, now: float) -> tuple[float, float] | None:
        """NVLink TX/RX MiB/s over all links since the previous call; None on the first call or without NVLink."""
        lib = self.lib
        ids = [(getattr(lib, "NVML_FI_DEV_NVLINK_THROUGHPUT_DATA_TX", 138), _ALL_LINKS),
               (getattr(lib, "NVML_FI_DEV_NVLINK_THROUGHPUT_DATA_RX", 139), _ALL_LINKS)]
        values = self.ask("nvlink", lib.nvmlDeviceGetFieldValues, self.handle, ids)
        if values is None:
            return None
        if any(getattr(v, "nvmlReturn", 0) != 0 for v in values):
            self.off.add("nvlink")
            return None
        tx, rx = (int(v.value.ullVal) for v in values)  # KiB since the driver loaded
        prev, self._links_prev = self._links_prev, (now, tx, rx)
        if prev is None or now <= prev[0]:
            return None
        dt = now - prev[0]
        return (tx - prev[1]) / 1024 / dt, (rx - prev[2]) / 1024 / dt

    def sample(self, now: float, host: str) -> dict:
        lib, h, ask = self.lib, self.handle, self.ask
        row: dict = {"time": round(now, 3), "host": host, "gpu": self.index}
        if self.name:
            row["name"] = self.name
        util = ask("util", lib.nvmlDeviceGetUtilizationRates, h)
        if util is not None:
            row["util_percent"] = float(util.gpu)
            row["mem_util_percent"] = float(util.memory)
        mem = ask("mem", lib.nvmlDeviceGetMemoryInfo, h)
        if mem is not None:
            row["mem_used_mib"] = round(mem.used / _MIB, 1)
            row["mem_total_mib"] = round(mem.total / _MIB, 1)
        _put(row, "power_w", ask("power", lib.nvmlDeviceGetPowerUsage, h), 1e-3)
        _put(row, "power_limit_w", ask("power_limit", lib.nvmlDeviceGetEnforcedPowerLimit, h), 1e-3)
        _put(row, "energy_j", ask("energy", lib.nvmlDeviceGetTotalEnergyConsumption, h), 1e-3)
        _put(row, "temp_c", ask("temp", lib.nvmlDeviceGetTemperature, h, getattr(lib, "NVML_TEMPERATURE_GPU", 0)))
        _put(row, "sm_clock_mhz", ask("sm_clock", lib.nvmlDeviceGetClockInfo, h, getattr(lib, "NVML_CLOCK_SM", 1)))
        _put(row, "mem_clock_mhz", ask("mem_clock", lib.nvmlDeviceGetClockInfo, h, getattr(lib, "NVML_CLOCK_MEM", 2)))
        reasons = getattr(lib, "nvmlDeviceGetCurrentClocksEventReasons", None) or getattr(
            lib, "nvmlDeviceGetCurrentClocksThrottleReasons", None)
        mask = ask("throttle", reasons, h) if reasons is not None else None
        if mask is not None:
            row["throttle"] = throttle_words(int(mask))
        pcie = getattr(lib, "nvmlDeviceGetPcieThroughput", None)
        if pcie is not None:  # KB/s
            _put(row, "pcie_tx_mib_s", ask("pcie", pcie, h, getattr(lib, "NVML_PCIE_UTIL_TX_BYTES", 0)), 1 / 1024)
            _put(row, "pcie_rx_mib_s", ask("pcie", pcie, h, getattr(lib, "NVML_PCIE_UTIL_RX_BYTES", 1)), 1 / 1024)
        links = self.nvlink(now) if hasattr(lib, "nvmlDeviceGetFieldValues") else None
        if links is not None:
            row["nvlink_tx_mib_s"], row["nvlink_rx_mib_s"] = round(links[0], 1), round(links[1], 1)
        ecc = getattr(lib, "nvmlDeviceGetTotalEccErrors", None)
        if ecc is not None:
            volatile = getattr(lib, "NVML_VOLATILE_ECC", 0)
            for key, kind in (("ecc_corrected", "NVML_MEMORY_ERROR_TYPE_CORRECTED"),
                              ("ecc_uncorrected", "NVML_MEMORY_ERROR_TYPE_UNCORRECTED")):
                count = ask("ecc", ecc, h, getattr(lib, kind, int(key == "ecc_uncorrected")), volatile)
                if count is not None:
                    row[key] = int(count)
        xids = self.xids()
        if xids:
            row["xid"] = xids
        return row


def _put(row: dict, key: str, value, scale: float = 1.0) -> None:
    if value is not None:
        row[key] = round(float(value) * scale, 2)


class Nvml:
    """Reads samples from a fixed set of GPUs; ``sample()`` returns one row (dict) per GPU."""

    def __init__(self, lib, gpus: list[Gpu]):
        self.lib, self.gpus = lib, gpus
        self.host = socket.gethostname()

    @property
    def indices(self) -> list[int]:
        return [g.index for g in self.gpus]

    def sample(self) -> list[dict]:
        now = time.time()
        return [gpu.sample(now, self.host) for gpu in self.gpus]


def _open_one(lib, item: str, count: int):
    """(index, handle) for '3' or 'GPU-<uuid>', None when it is not on this node."""
    if item.isdigit():
        return (int(item), lib.nvmlDeviceGetHandleByIndex(int(item))) if int(item) < count else None
    try:
        handle = lib.nvmlDeviceGetHandleByUUID(item)
        return lib.nvmlDeviceGetIndex(handle), handle
    except Exception:
        return None


def open_nvml(lib=None, cuda_ordinal: int | None = None, uuid: str | None = None,
              announce: bool = False) -> Nvml | None:
    """NVML for this process's GPUs, or None without a driver.

    ``uuid`` (the torch device's) or ``cuda_ordinal`` (an index into the allocated GPUs) narrow it
    to the one GPU a rank trains on; otherwise every GPU allocated to the job on this node.
    ``announce``: log the one line that says monitoring is off (rank 0 does).
    """
    lib = lib if lib is not None else load_nvml()
    say = log.info if announce else log.debug
    if lib is None:
        say("GPU monitoring off: nvidia-ml-py is not installed")
        return None
    try:
        lib.nvmlInit()
        count = lib.nvmlDeviceGetCount()
    except Exception as err:  # NVMLError_LibraryNotFound / _DriverNotLoaded on machines without a driver
        say("GPU monitoring off: no NVIDIA driver (%s)", err)
        return None
    try:
        wanted = [uuid] if uuid else allocated_gpus() or [str(i) for i in range(count)]
        if cuda_ordinal is not None and not uuid:
            wanted = wanted[cuda_ordinal:cuda_ordinal + 1] or wanted[:1]
        opened = [o for o in (_open_one(lib, item, count) for item in wanted) if o is not None]
        if not opened and uuid and cuda_ordinal is not None:  # UUID unknown to this NVML: fall back to the ordinal
            return open_nvml(lib, cuda_ordinal, None, announce)
        gpus = [Gpu(lib, index, handle) for index, handle in opened]
    except Exception as err:
        say("GPU monitoring off: NVML could not open the GPUs (%s)", err)
        return None
    if not gpus:
        say("GPU monitoring off: no GPU of this job is visible to NVML")
        return None
    return Nvml(lib, gpus)


__all__ = ["Gpu", "NVML_MODULE_ENV", "Nvml", "allocated_gpus", "load_nvml", "nvml_module_name", "open_nvml"]
