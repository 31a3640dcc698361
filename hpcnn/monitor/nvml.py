"""A narrow NVML reader: device handles cached once, cheap queries only (no per-process lists).

``open_nvml()`` returns None where there is no NVIDIA driver (CPU machines, CI). A field that
a GPU or driver does not support is absent from the row, and after its first "not supported"
it is not asked again. Only the job's own GPUs are opened: the GPU whose UUID torch reports for
a rank, else the GPUs in ``CUDA_VISIBLE_DEVICES`` resolved the way CUDA reads it (identity.py).
Every ``open_nvml`` that returns an ``Nvml`` holds one NVML initialisation (NVML counts them);
``Nvml.close()`` frees the XID event sets and gives it back with ``nvmlShutdown``.

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
from .identity import Match, by_uuid, inventory, resolve

log = logging.getLogger("hpcnn.monitor")
NVML_MODULE_ENV = "HPCNN_NVML_MODULE"
_MIB = 2**20
# NVML return codes after which a field is never asked again on that GPU: not supported, no permission.
_PERMANENT = (3, 4)
_XID_EVENTS = 8  # nvmlEventTypeXidCriticalError
_ALL_LINKS = 0xFFFFFFFF


def load_nvml():
    """The NVML Python module (pynvml from nvidia-ml-py, or the testing stand-in), None if not installed."""
    try:
        return importlib.import_module(os.environ.get(NVML_MODULE_ENV) or "pynvml")
    except ImportError:
        return None


class Gpu:
    """One device: its handle and the facts that never change, opened once."""

    def __init__(self, lib, index: int, handle, mig: str | None = None):
        self.lib, self.index, self.handle, self.mig = lib, index, handle, mig
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
        try:
            events = lib.nvmlEventSetCreate()
        except Exception:  # also an NVML module without event sets (AttributeError)
            return None
        try:
            lib.nvmlDeviceRegisterEvents(self.handle, getattr(lib, "nvmlEventTypeXidCriticalError", _XID_EVENTS),
                                         events)
            return events
        except Exception:  # not supported, or no permission (non-root on some drivers)
            _free(lib, events)
            return None

    def close(self) -> None:
        """Free the XID event set (NVML keeps it until nvmlEventSetFree)."""
        events, self.events = self.events, None
        if events is not None:
            _free(self.lib, events)

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
        if any(v.nvmlReturn != 0 for v in values):
            self.off.add("nvlink")
            return None
        tx, rx = (_field_value(v) for v in values)  # KiB since the driver loaded
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
        if self.mig:
            row["mig"] = self.mig
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


# nvmlValueType_t -> the member of the nvmlValue_t union that holds it (nvml.h; pynvml's NVML_VALUE_TYPE_*)
_VALUE_MEMBERS = {0: "dVal", 1: "uiVal", 2: "ulVal", 3: "ullVal", 4: "sllVal", 5: "siVal", 6: "usVal"}


def _field_value(v) -> int:
    """A c_nvmlFieldValue_t's value, read from the union member its valueType names."""
    return int(getattr(v.value, _VALUE_MEMBERS.get(int(v.valueType), "ullVal")))


def _free(lib, events) -> None:
    try:
        lib.nvmlEventSetFree(events)
    except Exception as err:
        log.debug("nvmlEventSetFree failed: %s", err)


def _put(row: dict, key: str, value, scale: float = 1.0) -> None:
    if value is not None:
        row[key] = round(float(value) * scale, 2)


class Nvml:
    """Reads samples from a fixed set of GPUs; ``sample()`` returns one row (dict) per GPU."""

    def __init__(self, lib, gpus: list[Gpu]):
        self.lib, self.gpus = lib, gpus
        self.host = socket.gethostname()
        self.closed = False

    def __enter__(self) -> "Nvml":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        """Free the event sets and give back this reader's NVML initialisation; a second call does nothing."""
        if not self.closed:
            self.closed = True
            _close_all(self.lib, self.gpus)

    @property
    def indices(self) -> list[int]:
        return [g.index for g in self.gpus]

    def sample(self) -> list[dict]:
        now = time.time()
        return [gpu.sample(now, self.host) for gpu in self.gpus]


def _close_all(lib, gpus: list[Gpu]) -> None:
    """Free the GPUs' event sets and give back one NVML initialisation."""
    for gpu in gpus:
        gpu.close()
    try:
        lib.nvmlShutdown()
    except Exception as err:
        log.debug("nvmlShutdown failed: %s", err)


def _wanted(lib, cuda_ordinal: int | None, uuid: str | None) -> list[Match]:
    """The GPUs to open: torch's UUID, else the ordinal-th visible GPU, else every visible GPU."""
    devices = inventory(lib)
    if uuid:
        match = by_uuid(lib, uuid, devices)
        if match is not None:
            return [match]
        log.debug("GPU %s is unknown to NVML here: falling back to CUDA_VISIBLE_DEVICES", uuid)
    visible = resolve(lib, devices)
    return visible if cuda_ordinal is None else visible[cuda_ordinal:cuda_ordinal + 1]


def open_nvml(lib=None, cuda_ordinal: int | None = None, uuid: str | None = None,
              announce: bool = False) -> Nvml | None:
    """NVML for this process's GPUs, or None without a driver; close() the result when done.

    ``uuid`` (the torch device's) or ``cuda_ordinal`` (CUDA's index among the visible GPUs) narrow
    it to the one GPU a rank trains on; otherwise every GPU allocated to the job on this node.
    ``announce``: log the one line that says monitoring is off (rank 0 does).
    """
    lib = lib if lib is not None else load_nvml()
    say = log.info if announce else log.debug
    if lib is None:
        say("GPU monitoring off: nvidia-ml-py is not installed")
        return None
    try:
        lib.nvmlInit()
    except Exception as err:  # NVMLError_LibraryNotFound / _DriverNotLoaded on machines without a driver
        say("GPU monitoring off: no NVIDIA driver (%s)", err)
        return None
    gpus: list[Gpu] = []
    try:
        for match in _wanted(lib, cuda_ordinal, uuid):
            gpus.append(Gpu(lib, match.device.index, match.device.handle, match.mig))
    except Exception as err:
        say("GPU monitoring off: NVML could not open the GPUs (%s)", err)
        _close_all(lib, gpus)
        return None
    if not gpus:
        say("GPU monitoring off: no GPU of this job is visible to NVML")
        _close_all(lib, gpus)
        return None
    return Nvml(lib, gpus)


__all__ = ["Gpu", "NVML_MODULE_ENV", "Nvml", "load_nvml", "open_nvml"]
