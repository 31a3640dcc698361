"""Which NVML devices are this process's GPUs: CUDA_VISIBLE_DEVICES resolved the way CUDA reads it.

NVML numbers GPUs its own way; CUDA numbers them by CUDA_DEVICE_ORDER (default FASTEST_FIRST) and
then applies CUDA_VISIBLE_DEVICES, whose entries may be indices, UUIDs ("GPU-..." or a unique
prefix of one) or MIG instances ("MIG-<uuid>", or "MIG-GPU-<uuid>/<gi>/<ci>" of drivers before
R470). Under Slurm's device cgroups the indices are renumbered. So every entry is matched to an
NVML device by something both sides agree on:

* UUIDs (GPU and MIG) by UUID: exact.
* Indices, where Slurm says which GPUs the step has (SLURM_STEP_GPUS, else SLURM_JOB_GPUS in the
  batch step): Slurm's GPU IDs are physical, matched to the NVML minor number (/dev/nvidiaN) —
  what they are when gres.conf names /dev/nvidia files in order.
* Other indices: the i-th device in PCI bus order. That is CUDA's order under
  CUDA_DEVICE_ORDER=PCI_BUS_ID, and under FASTEST_FIRST when the node's GPUs are all one model;
  with mixed models it is a guess, said once in the log (the trainer does not rely on it: it
  opens its GPU by the UUID torch reports).

A MIG instance is sampled through its parent GPU (utilisation, power and clocks are the whole
GPU's); the row says which instance the job was given.
"""
from __future__ import annotations

import logging
import os
from dataclasses import dataclass

from ..env.slurm_gpus import slurm_gpu_ids

log = logging.getLogger("hpcnn.monitor")
_warned: set[str] = set()


@dataclass
class Device:
    """One NVML device and the facts used to match it."""
    index: int
    handle: object
    uuid: str
    pci: tuple[int, int, int]   # (domain, bus, device): CUDA's PCI_BUS_ID order
    minor: int | None            # /dev/nvidia<minor>: Slurm's physical GPU ID
    name: str


@dataclass
class Match:
    device: Device
    mig: str | None = None       # the MIG instance's UUID when the entry was one


def visible_entries(env=None) -> list[str] | None:
    """CUDA_VISIBLE_DEVICES as CUDA reads it: None when unset (every GPU), else the entries up to the
    first invalid one (CUDA ignores the rest; "" or "-1" hides every GPU)."""
    value = (os.environ if env is None else env).get("CUDA_VISIBLE_DEVICES")
    if value is None:
        return None
    out: list[str] = []
    for item in (part.strip() for part in value.split(",")):
        if not (item.isdigit() or item.startswith(("GPU-", "MIG-"))) or item in out:
            break
        out.append(item)
    return out


def _text(value) -> str:
    return value.decode(errors="replace") if isinstance(value, bytes) else str(value)


def inventory(lib) -> list[Device]:
    """Every GPU this process can open with NVML (a device it may not open is left out)."""
    devices = []
    for index in range(lib.nvmlDeviceGetCount()):
        try:
            handle = lib.nvmlDeviceGetHandleByIndex(index)
            pci = lib.nvmlDeviceGetPciInfo(handle)
            uuid, name = _text(lib.nvmlDeviceGetUUID(handle)), _text(lib.nvmlDeviceGetName(handle))
        except Exception as err:  # NoPermission under a device cgroup, GpuIsLost, ...
            log.debug("NVML device %d left out: %s", index, err)
            continue
        try:
            minor = int(lib.nvmlDeviceGetMinorNumber(handle))
        except Exception:  # not supported on some platforms
            minor = None
        devices.append(Device(index, handle, uuid, (int(pci.domain), int(pci.bus), int(pci.device)), minor, name))
    return devices


def _mig_instances(lib, devices: list[Device]) -> list[tuple[str, Device]]:
    """(MIG UUID, parent) of every MIG instance on the node; [] without MIG."""
    out = []
    for parent in devices:
        try:
            slots = lib.nvmlDeviceGetMaxMigDeviceCount(parent.handle)
        except Exception:
            continue
        for slot in range(slots):
            try:
                out.append((_text(lib.nvmlDeviceGetUUID(lib.nvmlDeviceGetMigDeviceHandleByIndex(parent.handle, slot))),
                            parent))
            except Exception:  # an empty slot: NVML_ERROR_NOT_FOUND
                continue
    return out


def _mig(lib, entry: str, devices: list[Device]) -> Match | None:
    if entry.startswith("MIG-GPU-"):  # pre-R470 form MIG-GPU-<parent uuid>/<gi>/<ci>
        return next((Match(d, entry) for d in devices if d.uuid.lower() == entry[4:].split("/")[0].lower()), None)
    hits = [(uuid, parent) for uuid, parent in _mig_instances(lib, devices) if uuid.lower().startswith(entry.lower())]
    return Match(hits[0][1], hits[0][0]) if len(hits) == 1 else None


def pci_order(devices: list[Device], env=None) -> list[Device]:
    """The devices in the order CUDA numbers them, as far as NVML can tell (see the module doc)."""
    env = os.environ if env is None else env
    order = sorted(devices, key=lambda d: d.pci)
    if env.get("CUDA_DEVICE_ORDER", "FASTEST_FIRST") != "PCI_BUS_ID" and len({d.name for d in devices}) > 1 \
            and "order" not in _warned:
        _warned.add("order")
        log.warning("GPU monitoring: this node mixes GPU models and CUDA_DEVICE_ORDER is not PCI_BUS_ID, so "
                    "CUDA's device numbers may differ from the PCI order assumed here; set "
                    "CUDA_DEVICE_ORDER=PCI_BUS_ID (or CUDA_VISIBLE_DEVICES=GPU-<uuid>) to be sure")
    return order


def resolve(lib, devices: list[Device], env=None) -> list[Match]:
    """This process's GPUs, in CUDA's order (entry order of CUDA_VISIBLE_DEVICES); each GPU once."""
    env = os.environ if env is None else env
    entries = visible_entries(env)
    if entries is None:
        return [Match(d) for d in pci_order(devices, env)]
    indices = [e for e in entries if e.isdigit()]
    slurm = slurm_gpu_ids(env)
    by_minor = {d.minor: d for d in devices if d.minor is not None}
    use_slurm = slurm is not None and len(slurm) == len(indices) == len(entries) and all(i in by_minor for i in slurm)
    order = pci_order(devices, env) if indices and not use_slurm else []
    found: list[Match] = []
    for position, entry in enumerate(entries):
        if entry.startswith("MIG-"):
            match = _mig(lib, entry, devices)
        elif entry.startswith("GPU-"):
            hits = [d for d in devices if d.uuid.lower().startswith(entry.lower())]
            match = Match(hits[0]) if len(hits) == 1 else None  # CUDA takes a prefix only when it names one GPU
        elif use_slurm:
            match = Match(by_minor[slurm[position]])
        else:
            match = Match(order[int(entry)]) if int(entry) < len(order) else None
        if match is None:
            log.debug("CUDA_VISIBLE_DEVICES entry %r matches no NVML device here", entry)
            break  # CUDA stops at an entry it cannot use, too
        if all(m.device.index != match.device.index for m in found):
            found.append(match)
    return found


def by_uuid(lib, uuid: str, devices: list[Device]) -> Match | None:
    """The device (or MIG instance's parent) whose UUID torch reported; a bare UUID may be either kind."""
    for candidate in ([uuid] if uuid.startswith(("GPU-", "MIG-")) else [f"GPU-{uuid}", f"MIG-{uuid}"]):
        if candidate.startswith("MIG-"):
            match = _mig(lib, candidate, devices)
        else:
            match = next((Match(d) for d in devices if d.uuid.lower() == candidate.lower()), None)
        if match is not None:
            return match
    return None


__all__ = ["Device", "Match", "by_uuid", "inventory", "pci_order", "resolve", "visible_entries"]
