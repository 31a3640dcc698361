"""A thin stand-in for ``pynvml`` (nvidia-ml-py): same function names, return types, NVMLError classes
and constants, for the calls hpcnn makes. Used ONLY because CI has no GPU: point hpcnn at it with
``HPCNN_NVML_MODULE=tests.support.fake_pynvml`` (or pass the module as ``open_nvml(lib=...)``); the
real pynvml drops in unchanged (tests/gpu/ runs that path).

What the fake GPUs report comes from ``CONFIG`` (in-process) or the JSON in ``HPCNN_FAKE_NVML``
(for other processes, e.g. srun tasks), e.g. ``{"count": 2, "util": [90, 40], "no_driver": false,
"unsupported": ["nvmlDeviceGetPcieThroughput"], "throttle": [0, 64], "xid": {"1": [79]}}``.
Values per GPU may be a number (all GPUs) or a list (one per GPU).
"""
from __future__ import annotations

import json
import os
import time
from types import SimpleNamespace

# ---- constants (values as in pynvml)
NVML_SUCCESS = 0
NVML_ERROR_NOT_SUPPORTED = 3
NVML_ERROR_NO_PERMISSION = 4
NVML_ERROR_TIMEOUT = 10
NVML_ERROR_LIBRARY_NOT_FOUND = 12
NVML_TEMPERATURE_GPU = 0
NVML_CLOCK_GRAPHICS, NVML_CLOCK_SM, NVML_CLOCK_MEM = 0, 1, 2
NVML_PCIE_UTIL_TX_BYTES, NVML_PCIE_UTIL_RX_BYTES = 0, 1
NVML_MEMORY_ERROR_TYPE_CORRECTED, NVML_MEMORY_ERROR_TYPE_UNCORRECTED = 0, 1
NVML_VOLATILE_ECC, NVML_AGGREGATE_ECC = 0, 1
NVML_FI_DEV_NVLINK_THROUGHPUT_DATA_TX, NVML_FI_DEV_NVLINK_THROUGHPUT_DATA_RX = 138, 139
nvmlEventTypeXidCriticalError = 8
nvmlClocksEventReasonGpuIdle = 0x1
nvmlClocksEventReasonSwPowerCap = 0x4
nvmlClocksEventReasonSwThermalSlowdown = 0x20
nvmlClocksEventReasonHwThermalSlowdown = 0x40


class NVMLError(Exception):
    """Like pynvml's: NVMLError(value) returns the subclass for that return code."""
    _valClassMapping: dict[int, type] = {}

    def __new__(cls, value):
        if cls is NVMLError:
            cls = NVMLError._valClassMapping.get(value, cls)
        obj = Exception.__new__(cls)
        obj.value = value
        return obj

    def __init__(self, value):
        self.value = value

    def __str__(self):
        return {3: "Not Supported", 4: "Insufficient Permissions", 10: "Timeout",
                12: "NVML Shared Library Not Found"}.get(self.value, f"NVML error {self.value}")


class NVMLError_NotSupported(NVMLError):
    pass


class NVMLError_NoPermission(NVMLError):
    pass


class NVMLError_Timeout(NVMLError):
    pass


class NVMLError_LibraryNotFound(NVMLError):
    pass


NVMLError._valClassMapping.update({3: NVMLError_NotSupported, 4: NVMLError_NoPermission, 10: NVMLError_Timeout,
                                   12: NVMLError_LibraryNotFound})

DEFAULTS = {"count": 2, "no_driver": False, "util": 87, "mem_util": 35, "mem_used_mib": 20_000,
            "mem_total_mib": 81_559, "power_w": 310.0, "power_limit_w": 700.0, "temp_c": 58, "sm_clock_mhz": 1980,
            "mem_clock_mhz": 2619, "throttle": 0, "pcie_kb_s": 4096, "nvlink": True, "ecc_corrected": 0,
            "ecc_uncorrected": 0, "xid": {}, "unsupported": [], "raise_in": [], "name": "Stand-in H100"}
CONFIG: dict = {}
_T0 = time.time()
_pending_xid: dict[int, list[int]] = {}
calls = 0


def configure(**values) -> None:
    """Set what the fake GPUs report (in-process tests); resets to DEFAULTS + env + values."""
    CONFIG.clear()
    CONFIG.update(DEFAULTS)
    CONFIG.update(json.loads(os.environ.get("HPCNN_FAKE_NVML") or "{}"))
    CONFIG.update(values)
    _pending_xid.clear()
    for gpu, codes in CONFIG["xid"].items():
        _pending_xid[int(gpu)] = list(codes)


configure()


def _per_gpu(key, handle):
    value = CONFIG[key]
    return value[handle.index % len(value)] if isinstance(value, list) else value


def _check(name: str) -> None:
    global calls
    calls += 1
    if name in CONFIG["unsupported"]:
        raise NVMLError(NVML_ERROR_NOT_SUPPORTED)
    if name in CONFIG["raise_in"]:
        raise RuntimeError(f"stand-in failure in {name}")


class c_nvmlDevice_t(SimpleNamespace):
    pass


def nvmlInit():
    if CONFIG["no_driver"]:
        raise NVMLError(NVML_ERROR_LIBRARY_NOT_FOUND)


def nvmlShutdown():
    pass


def nvmlDeviceGetCount():
    _check("nvmlDeviceGetCount")
    return CONFIG["count"]


def nvmlDeviceGetHandleByIndex(index):
    if not 0 <= index < CONFIG["count"]:
        raise NVMLError(2)
    return c_nvmlDevice_t(index=index)


def nvmlDeviceGetHandleByUUID(uuid):
    for i in range(CONFIG["count"]):
        if uuid == f"GPU-fake-{i}":
            return c_nvmlDevice_t(index=i)
    raise NVMLError(2)


def nvmlDeviceGetIndex(handle):
    return handle.index


def nvmlDeviceGetName(handle):
    _check("nvmlDeviceGetName")
    return CONFIG["name"]


def nvmlDeviceGetUUID(handle):
    return f"GPU-fake-{handle.index}"


def nvmlDeviceGetUtilizationRates(handle):
    _check("nvmlDeviceGetUtilizationRates")
    return SimpleNamespace(gpu=_per_gpu("util", handle), memory=_per_gpu("mem_util", handle))


def nvmlDeviceGetMemoryInfo(handle):
    _check("nvmlDeviceGetMemoryInfo")
    used, total = _per_gpu("mem_used_mib", handle) * 2**20, _per_gpu("mem_total_mib", handle) * 2**20
    return SimpleNamespace(total=total, free=total - used, used=used)


def nvmlDeviceGetPowerUsage(handle):
    _check("nvmlDeviceGetPowerUsage")
    return int(_per_gpu("power_w", handle) * 1000)  # mW


def nvmlDeviceGetEnforcedPowerLimit(handle):
    _check("nvmlDeviceGetEnforcedPowerLimit")
    return int(_per_gpu("power_limit_w", handle) * 1000)


def nvmlDeviceGetTotalEnergyConsumption(handle):
    _check("nvmlDeviceGetTotalEnergyConsumption")
    return int(1e6 + _per_gpu("power_w", handle) * 1000 * (time.time() - _T0))  # mJ, grows as power x time


def nvmlDeviceGetTemperature(handle, sensor):
    _check("nvmlDeviceGetTemperature")
    return _per_gpu("temp_c", handle)


def nvmlDeviceGetClockInfo(handle, clock_type):
    _check("nvmlDeviceGetClockInfo")
    return _per_gpu("mem_clock_mhz" if clock_type == NVML_CLOCK_MEM else "sm_clock_mhz", handle)


def nvmlDeviceGetCurrentClocksEventReasons(handle):
    _check("nvmlDeviceGetCurrentClocksEventReasons")
    return _per_gpu("throttle", handle)


nvmlDeviceGetCurrentClocksThrottleReasons = nvmlDeviceGetCurrentClocksEventReasons


def nvmlDeviceGetPcieThroughput(handle, counter):
    _check("nvmlDeviceGetPcieThroughput")
    return _per_gpu("pcie_kb_s", handle)  # KB/s


def nvmlDeviceGetFieldValues(handle, fieldIds):
    _check("nvmlDeviceGetFieldValues")
    kib = int((time.time() - _T0) * 1024 * 100)  # 100 MiB/s each way, cumulative KiB
    out = []
    for _ in fieldIds:
        ok = CONFIG["nvlink"]
        out.append(SimpleNamespace(nvmlReturn=NVML_SUCCESS if ok else NVML_ERROR_NOT_SUPPORTED,
                                   value=SimpleNamespace(ullVal=kib if ok else 0)))
    return out


def nvmlDeviceGetTotalEccErrors(handle, error_type, counter_type):
    _check("nvmlDeviceGetTotalEccErrors")
    key = "ecc_uncorrected" if error_type == NVML_MEMORY_ERROR_TYPE_UNCORRECTED else "ecc_corrected"
    return _per_gpu(key, handle)


def nvmlEventSetCreate():
    _check("nvmlEventSetCreate")
    return SimpleNamespace(devices=[])


def nvmlDeviceRegisterEvents(handle, event_types, event_set):
    _check("nvmlDeviceRegisterEvents")
    event_set.devices.append(handle)


def nvmlEventSetWait(event_set, timeoutms):
    for handle in event_set.devices:
        codes = _pending_xid.get(handle.index)
        if codes:
            return SimpleNamespace(device=handle, eventType=nvmlEventTypeXidCriticalError, eventData=codes.pop(0),
                                   gpuInstanceId=0, computeInstanceId=0)
    raise NVMLError(NVML_ERROR_TIMEOUT)


def nvmlEventSetFree(event_set):
    pass
