"""A thin stand-in for ``pynvml`` (nvidia-ml-py): same function names, signatures, return types,
NVMLError classes and constants, for the calls hpcnn makes. Used ONLY because CI has no GPU: point
hpcnn at it with ``HPCNN_NVML_MODULE=tests.support.fake_pynvml`` (or pass the module as
``open_nvml(lib=...)``); the real pynvml drops in unchanged (tests/gpu/ runs that path).

It is strict where nvidia-ml-py and the driver are (checked against nvidia-ml-py 13.615.71's
pynvml.py and nvml.h): arguments are type- and range-checked (a bad enum is
NVML_ERROR_INVALID_ARGUMENT, a non-integer where ctypes wants one a TypeError), field values take
a list of field ids or (field id, scope id) pairs and answer one ``c_nvmlFieldValue_t`` each with
its own ``nvmlReturn``, every call needs ``nvmlInit`` (NVML counts inits and shutdowns), and event
sets must be live. Every misuse is also appended to ``misuse``, so a test can assert none happened
even where hpcnn swallows the error.

What the fake GPUs report comes from ``CONFIG`` (in-process) or the JSON in ``HPCNN_FAKE_NVML``
(for other processes, e.g. srun tasks), e.g. ``{"count": 2, "util": [90, 40], "no_driver": false,
"unsupported": ["nvmlDeviceGetPcieThroughput"], "throttle": [0, 64], "xid": {"1": [79]}}``.
Values per GPU may be a number (all GPUs) or a list (one per GPU). Identity: ``uuids``, ``pci_bus``
(PCI bus number per NVML index), ``minor`` (/dev/nvidiaN), ``hidden`` (indices NVML may not open,
as under a device cgroup), ``mig`` ({"index": number of MIG instances}).
"""
from __future__ import annotations

import json
import os
import time
from types import SimpleNamespace

# ---- constants (values as in pynvml / nvml.h)
NVML_SUCCESS = 0
NVML_ERROR_UNINITIALIZED = 1
NVML_ERROR_INVALID_ARGUMENT = 2
NVML_ERROR_NOT_SUPPORTED = 3
NVML_ERROR_NO_PERMISSION = 4
NVML_ERROR_NOT_FOUND = 6
NVML_ERROR_TIMEOUT = 10
NVML_ERROR_LIBRARY_NOT_FOUND = 12
NVML_TEMPERATURE_GPU, NVML_TEMPERATURE_COUNT = 0, 2
NVML_CLOCK_GRAPHICS, NVML_CLOCK_SM, NVML_CLOCK_MEM, NVML_CLOCK_VIDEO, NVML_CLOCK_COUNT = 0, 1, 2, 3, 4
NVML_PCIE_UTIL_TX_BYTES, NVML_PCIE_UTIL_RX_BYTES, NVML_PCIE_UTIL_COUNT = 0, 1, 2
NVML_MEMORY_ERROR_TYPE_CORRECTED, NVML_MEMORY_ERROR_TYPE_UNCORRECTED, NVML_MEMORY_ERROR_TYPE_COUNT = 0, 1, 2
NVML_VOLATILE_ECC, NVML_AGGREGATE_ECC = 0, 1
NVML_VALUE_TYPE_UNSIGNED_LONG_LONG = 3
NVML_FI_DEV_NVLINK_THROUGHPUT_DATA_TX, NVML_FI_DEV_NVLINK_THROUGHPUT_DATA_RX = 138, 139
NVML_FI_DEV_NVLINK_THROUGHPUT_RAW_TX, NVML_FI_DEV_NVLINK_THROUGHPUT_RAW_RX = 140, 141
NVML_FI_MAX = 308
_NVLINK_FIELDS = (138, 139, 140, 141)
_ALL_LINKS = 0xFFFFFFFF  # nvml.h: "A scopeId of UINT_MAX returns aggregate value summed up across all links"
nvmlEventTypeXidCriticalError = 0x8
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
        return {1: "Uninitialized", 2: "Invalid Argument", 3: "Not Supported", 4: "Insufficient Permissions",
                6: "Not Found", 10: "Timeout", 12: "NVML Shared Library Not Found"}.get(self.value,
                                                                                       f"NVML error {self.value}")


class NVMLError_Uninitialized(NVMLError):
    pass


class NVMLError_InvalidArgument(NVMLError):
    pass


class NVMLError_NotSupported(NVMLError):
    pass


class NVMLError_NoPermission(NVMLError):
    pass


class NVMLError_NotFound(NVMLError):
    pass


class NVMLError_Timeout(NVMLError):
    pass


class NVMLError_LibraryNotFound(NVMLError):
    pass


NVMLError._valClassMapping.update({1: NVMLError_Uninitialized, 2: NVMLError_InvalidArgument,
                                   3: NVMLError_NotSupported, 4: NVMLError_NoPermission, 6: NVMLError_NotFound,
                                   10: NVMLError_Timeout, 12: NVMLError_LibraryNotFound})

DEFAULTS = {"count": 2, "no_driver": False, "util": 87, "mem_util": 35, "mem_used_mib": 20_000,
            "mem_total_mib": 81_559, "power_w": 310.0, "power_limit_w": 700.0, "temp_c": 58, "sm_clock_mhz": 1980,
            "mem_clock_mhz": 2619, "throttle": 0, "pcie_kb_s": 4096, "nvlink": True, "nvlink_links": 18,
            "nvlink_kib": None, "ecc_corrected": 0, "ecc_uncorrected": 0, "xid": {}, "unsupported": [],
            "raise_in": [], "name": "Stand-in H100", "uuids": None, "pci_bus": None, "minor": None, "hidden": [],
            "mig": {}}
CONFIG: dict = {}
_T0 = time.time()
_pending_xid: dict[int, list[int]] = {}
_live_sets: list = []
calls = 0
inits = shutdowns = 0
misuse: list[str] = []


def configure(**values) -> None:
    """Set what the fake GPUs report (in-process tests); resets to DEFAULTS + env + values, and the counters."""
    global inits, shutdowns
    CONFIG.clear()
    CONFIG.update(DEFAULTS)
    CONFIG.update(json.loads(os.environ.get("HPCNN_FAKE_NVML") or "{}"))
    CONFIG.update(values)
    _pending_xid.clear()
    for gpu, codes in CONFIG["xid"].items():
        _pending_xid[int(gpu)] = list(codes)
    _live_sets.clear()
    misuse.clear()
    inits = shutdowns = 0


def live_event_sets() -> int:
    """Event sets created and not yet freed."""
    return len(_live_sets)


configure()


def _invalid(what: str, kind=None):
    """Record a misuse and raise what nvidia-ml-py would: NVMLError(INVALID_ARGUMENT), or TypeError from ctypes."""
    misuse.append(what)
    if kind is TypeError:
        raise TypeError(what)
    raise NVMLError(NVML_ERROR_INVALID_ARGUMENT)


def _int(value, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        _invalid(f"{what} must be an int, got {value!r}", TypeError)
    return value


def _enum(value, count: int, what: str) -> int:
    if not 0 <= _int(value, what) < count:
        _invalid(f"{what} {value} is not a valid value (0..{count - 1})")
    return value


def _per_gpu(key, handle):
    value = CONFIG[key]
    return value[handle.index % len(value)] if isinstance(value, list) else value


def _identity(key: str, index: int, default):
    value = CONFIG[key]
    return value[index] if value is not None else default


def _check(name: str, handle=None) -> None:
    global calls
    calls += 1
    if inits <= shutdowns:
        misuse.append(f"{name} called while NVML is not initialised")
        raise NVMLError(NVML_ERROR_UNINITIALIZED)
    if handle is not None:
        if not isinstance(handle, c_nvmlDevice_t):
            _invalid(f"{name}: {handle!r} is not a device handle", TypeError)
        if handle.mig is not None and name not in _MIG_CALLS:
            raise NVMLError(NVML_ERROR_NOT_SUPPORTED)  # device queries on a MIG handle: not emulated
    if name in CONFIG["unsupported"]:
        raise NVMLError(NVML_ERROR_NOT_SUPPORTED)
    if name in CONFIG["raise_in"]:
        raise RuntimeError(f"stand-in failure in {name}")


_MIG_CALLS = ("nvmlDeviceGetUUID", "nvmlDeviceGetDeviceHandleFromMigDeviceHandle", "nvmlDeviceIsMigDeviceHandle")


class c_nvmlDevice_t(SimpleNamespace):
    def __init__(self, index: int, mig: int | None = None):
        super().__init__(index=index, mig=mig)


class c_nvmlEventSet_t(SimpleNamespace):
    pass


def nvmlInit():
    global inits
    if CONFIG["no_driver"]:
        raise NVMLError(NVML_ERROR_LIBRARY_NOT_FOUND)
    inits += 1


def nvmlShutdown():
    global shutdowns
    if inits <= shutdowns:
        misuse.append("nvmlShutdown without a matching nvmlInit")
        raise NVMLError(NVML_ERROR_UNINITIALIZED)
    shutdowns += 1


def nvmlDeviceGetCount():
    _check("nvmlDeviceGetCount")
    return CONFIG["count"]


def nvmlDeviceGetHandleByIndex(index):
    _check("nvmlDeviceGetHandleByIndex")
    if not 0 <= _int(index, "index") < CONFIG["count"]:
        raise NVMLError(NVML_ERROR_INVALID_ARGUMENT)
    if index in CONFIG["hidden"]:
        raise NVMLError(NVML_ERROR_NO_PERMISSION)
    return c_nvmlDevice_t(index)


def _uuid(index: int, mig: int | None = None) -> str:
    if mig is not None:
        return f"MIG-fake-{index}-{mig}"
    return _identity("uuids", index, f"GPU-fake-{index}")


def nvmlDeviceGetHandleByUUID(uuid):
    _check("nvmlDeviceGetHandleByUUID")
    if not isinstance(uuid, (str, bytes)):
        _invalid(f"uuid must be str or bytes, got {uuid!r}", TypeError)
    uuid = uuid.decode() if isinstance(uuid, bytes) else uuid
    for i in range(CONFIG["count"]):
        if uuid == _uuid(i) and i not in CONFIG["hidden"]:
            return c_nvmlDevice_t(i)
        for slot in range(int(CONFIG["mig"].get(str(i), 0))):
            if uuid == _uuid(i, slot):
                return c_nvmlDevice_t(i, slot)
    raise NVMLError(NVML_ERROR_NOT_FOUND)  # NVML matches whole UUIDs only


def nvmlDeviceGetIndex(handle):
    _check("nvmlDeviceGetIndex", handle)
    return handle.index


def nvmlDeviceGetName(handle):
    _check("nvmlDeviceGetName", handle)
    return _per_gpu("name", handle)


def nvmlDeviceGetUUID(handle):
    _check("nvmlDeviceGetUUID", handle)
    return _uuid(handle.index, handle.mig)


def nvmlDeviceGetPciInfo(handle):
    _check("nvmlDeviceGetPciInfo", handle)
    bus = _identity("pci_bus", handle.index, 0x18 + handle.index)
    return SimpleNamespace(domain=0, bus=bus, device=0, pciDeviceId=0x233010DE, pciSubSystemId=0,
                           busId=f"00000000:{bus:02X}:00.0".encode(), busIdLegacy=f"0000:{bus:02X}:00.0".encode())


def nvmlDeviceGetMinorNumber(handle):
    _check("nvmlDeviceGetMinorNumber", handle)
    return _identity("minor", handle.index, handle.index)


def nvmlDeviceGetMaxMigDeviceCount(device):
    _check("nvmlDeviceGetMaxMigDeviceCount", device)
    if str(device.index) not in CONFIG["mig"]:
        raise NVMLError(NVML_ERROR_NOT_SUPPORTED)
    return 7


def nvmlDeviceGetMigDeviceHandleByIndex(device, index):
    _check("nvmlDeviceGetMigDeviceHandleByIndex", device)
    if not 0 <= _int(index, "MIG index") < 7:
        _invalid(f"MIG index {index} out of range")
    if index >= int(CONFIG["mig"].get(str(device.index), 0)):
        raise NVMLError(NVML_ERROR_NOT_FOUND)
    return c_nvmlDevice_t(device.index, index)


def nvmlDeviceGetDeviceHandleFromMigDeviceHandle(migDevice):
    _check("nvmlDeviceGetDeviceHandleFromMigDeviceHandle", migDevice)
    if migDevice.mig is None:
        _invalid("not a MIG device handle")
    return c_nvmlDevice_t(migDevice.index)


def nvmlDeviceIsMigDeviceHandle(device):
    _check("nvmlDeviceIsMigDeviceHandle", device)
    return SimpleNamespace(value=int(device.mig is not None))  # pynvml returns the c_uint itself


def nvmlDeviceGetUtilizationRates(handle):
    _check("nvmlDeviceGetUtilizationRates", handle)
    return SimpleNamespace(gpu=_per_gpu("util", handle), memory=_per_gpu("mem_util", handle))


def nvmlDeviceGetMemoryInfo(handle, version=None):
    _check("nvmlDeviceGetMemoryInfo", handle)
    if version is not None:
        _int(version, "version")
    used, total = _per_gpu("mem_used_mib", handle) * 2**20, _per_gpu("mem_total_mib", handle) * 2**20
    return SimpleNamespace(total=total, free=total - used, used=used)


def nvmlDeviceGetPowerUsage(handle):
    _check("nvmlDeviceGetPowerUsage", handle)
    return int(_per_gpu("power_w", handle) * 1000)  # mW


def nvmlDeviceGetEnforcedPowerLimit(handle):
    _check("nvmlDeviceGetEnforcedPowerLimit", handle)
    return int(_per_gpu("power_limit_w", handle) * 1000)


def nvmlDeviceGetTotalEnergyConsumption(handle):
    _check("nvmlDeviceGetTotalEnergyConsumption", handle)
    return int(1e6 + _per_gpu("power_w", handle) * 1000 * (time.time() - _T0))  # mJ, grows as power x time


def nvmlDeviceGetTemperature(handle, sensor):
    _check("nvmlDeviceGetTemperature", handle)
    _enum(sensor, NVML_TEMPERATURE_COUNT, "temperature sensor")
    return _per_gpu("temp_c", handle)


def nvmlDeviceGetClockInfo(handle, type):  # noqa: A002 (pynvml's name)
    _check("nvmlDeviceGetClockInfo", handle)
    _enum(type, NVML_CLOCK_COUNT, "clock type")
    return _per_gpu("mem_clock_mhz" if type == NVML_CLOCK_MEM else "sm_clock_mhz", handle)


def nvmlDeviceGetCurrentClocksEventReasons(handle):
    _check("nvmlDeviceGetCurrentClocksEventReasons", handle)
    return _per_gpu("throttle", handle)


nvmlDeviceGetCurrentClocksThrottleReasons = nvmlDeviceGetCurrentClocksEventReasons


def nvmlDeviceGetPcieThroughput(device, counter):
    _check("nvmlDeviceGetPcieThroughput", device)
    _enum(counter, NVML_PCIE_UTIL_COUNT, "PCIe counter")
    return _per_gpu("pcie_kb_s", device)  # KB/s


def _nvlink_total_kib(handle) -> int:
    if CONFIG["nvlink_kib"] is not None:
        return int(_per_gpu("nvlink_kib", handle))
    return int((time.time() - _T0) * 1024 * 100)  # 100 MiB/s each way, cumulative KiB


def _field(handle, field_id: int, scope_id: int):
    """One c_nvmlFieldValue_t: the NVLink throughput counters, per link or (scope UINT_MAX) summed."""
    value = SimpleNamespace(dVal=0.0, uiVal=0, ulVal=0, ullVal=0, sllVal=0, siVal=0, usVal=0)
    out = SimpleNamespace(fieldId=field_id, scopeId=scope_id, timestamp=int(time.time() * 1e6), latencyUsec=0,
                          valueType=NVML_VALUE_TYPE_UNSIGNED_LONG_LONG, nvmlReturn=NVML_SUCCESS, value=value)
    links = CONFIG["nvlink_links"]
    if not 0 <= field_id < NVML_FI_MAX:
        misuse.append(f"field id {field_id} does not exist")
        out.nvmlReturn = NVML_ERROR_INVALID_ARGUMENT
    elif field_id not in _NVLINK_FIELDS or not CONFIG["nvlink"]:
        out.nvmlReturn = NVML_ERROR_NOT_SUPPORTED
    elif scope_id != _ALL_LINKS and not 0 <= scope_id < links:
        misuse.append(f"NVLink field {field_id}: scope id {scope_id} is neither a link nor UINT_MAX")
        out.nvmlReturn = NVML_ERROR_INVALID_ARGUMENT
    else:
        total = _nvlink_total_kib(handle)
        value.ullVal = total if scope_id == _ALL_LINKS else total // links
    return out


def nvmlDeviceGetFieldValues(handle, fieldIds):
    """As pynvml: fieldIds is a sequence of field ids or (field id, scope id) pairs (a bare id has scope 0)."""
    _check("nvmlDeviceGetFieldValues", handle)
    if isinstance(fieldIds, (str, bytes)) or not hasattr(fieldIds, "__len__"):
        _invalid(f"fieldIds must be a list, got {fieldIds!r}", TypeError)
    out = []
    for item in fieldIds:
        if isinstance(item, tuple):
            if len(item) != 2:
                _invalid(f"a field entry is (field id, scope id), got {item!r}", TypeError)
            field_id, scope_id = _int(item[0], "field id"), _int(item[1], "scope id")
        else:
            field_id, scope_id = _int(item, "field id"), 0
        out.append(_field(handle, field_id, scope_id))
    return out


def nvmlDeviceGetTotalEccErrors(handle, errorType, counterType):
    _check("nvmlDeviceGetTotalEccErrors", handle)
    _enum(errorType, NVML_MEMORY_ERROR_TYPE_COUNT, "memory error type")
    _enum(counterType, 2, "ECC counter type")
    key = "ecc_uncorrected" if errorType == NVML_MEMORY_ERROR_TYPE_UNCORRECTED else "ecc_corrected"
    return _per_gpu(key, handle)


def _live(event_set, what: str):
    if not any(s is event_set for s in _live_sets):
        _invalid(f"{what}: not a live event set ({event_set!r})")
    return event_set


def nvmlEventSetCreate():
    _check("nvmlEventSetCreate")
    event_set = c_nvmlEventSet_t(devices=[])
    _live_sets.append(event_set)
    return event_set


def nvmlDeviceRegisterEvents(handle, eventTypes, eventSet):
    _check("nvmlDeviceRegisterEvents", handle)
    _int(eventTypes, "event types")
    _live(eventSet, "nvmlDeviceRegisterEvents").devices.append(handle)


def nvmlEventSetWait(eventSet, timeoutms):
    _check("nvmlEventSetWait")
    _int(timeoutms, "timeoutms")
    for handle in _live(eventSet, "nvmlEventSetWait").devices:
        codes = _pending_xid.get(handle.index)
        if codes:
            return SimpleNamespace(device=handle, eventType=nvmlEventTypeXidCriticalError, eventData=codes.pop(0),
                                   gpuInstanceId=0, computeInstanceId=0)
    raise NVMLError(NVML_ERROR_TIMEOUT)


def nvmlEventSetFree(eventSet):
    _check("nvmlEventSetFree")
    _live(eventSet, "nvmlEventSetFree")
    _live_sets[:] = [s for s in _live_sets if s is not eventSet]
