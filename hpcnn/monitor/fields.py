"""What one GPU sample holds: every field with its unit and meaning, and throttle reasons in words.

One table, so the sampler, the summary, ``hpcnn top`` and docs/monitoring.md (a test compares)
agree on names. A field the GPU or driver does not support is simply absent from a row.
"""
from __future__ import annotations

# key -> meaning (unit in the name). Order = order in docs/monitoring.md.
FIELDS: dict[str, str] = {
    "time": "seconds since the epoch (sampler clock)",
    "host": "node the GPU is in",
    "rank": "training rank that sampled it (absent in `hpcnn top`/`gpus` snapshots)",
    "gpu": "NVML device index on the node",
    "name": "GPU model",
    "mig": "the MIG instance (UUID) the job was given, when it was one; the other fields are then its whole GPU's",
    "util_percent": "SM utilisation: share of the last sample period a kernel was running",
    "mem_util_percent": "memory-controller utilisation (share of time device memory was read or written)",
    "mem_used_mib": "device memory in use (all processes)",
    "mem_total_mib": "device memory capacity",
    "power_w": "board power draw",
    "power_limit_w": "enforced power limit",
    "energy_j": "energy counter since the driver loaded (Volta and newer)",
    "temp_c": "GPU core temperature",
    "sm_clock_mhz": "SM clock",
    "mem_clock_mhz": "memory clock",
    "throttle": "active clock-throttle reasons, in words (`[]` = running at full clocks)",
    "pcie_tx_mib_s": "PCIe transmit throughput (NVML samples it over 20 ms)",
    "pcie_rx_mib_s": "PCIe receive throughput",
    "nvlink_tx_mib_s": "NVLink transmit throughput over all links, since the previous sample (GPUs with NVLink)",
    "nvlink_rx_mib_s": "NVLink receive throughput",
    "ecc_corrected": "corrected ECC memory errors since the driver loaded (volatile count)",
    "ecc_uncorrected": "uncorrected ECC memory errors since the driver loaded",
    "xid": "XID critical-error codes reported since the previous sample (only present when there were some)",
    "stage": "what the trainer was doing: setup, train, eval, checkpoint, test, done",
    "phase": "the trainer phase's name (config `phases`)",
    "epoch": "0-based epoch of the run",
    "step": "global optimizer step the trainer had reached",
}

# NVML clock-event (throttle) reason bits -> words: nvml.h's nvmlClocksEventReason* (0x1..0x100; the
# same bits under the older nvmlClocksThrottleReason* names). 0x200 and 0x400 were not found in the
# nvml.h versions issue 18 checked; nvidia-ml-py names them (pynvml.py of 13.615.71:
# nvmlClocksThrottleReasonBoardLimit = 0x200, nvmlClocksThrottleReasonReliability = 0x400, both in
# nvmlClocksThrottleReasonAll, not among the ...EventReason... names). tests/unit/test_monitor.py checks
# every bit here against the installed pynvml.
THROTTLE_REASONS: dict[int, str] = {
    0x001: "idle",
    0x002: "app clocks",
    0x004: "power cap",
    0x008: "hw slowdown",
    0x010: "sync boost",
    0x020: "sw thermal",
    0x040: "hw thermal",
    0x080: "power brake",
    0x100: "display clocks",
    0x200: "board limit",
    0x400: "reliability",
}
# Reasons that mean the hardware or the site slowed the GPU (not the workload's own doing).
SITE_REASONS = ("hw slowdown", "sw thermal", "hw thermal", "power brake")


def throttle_words(mask: int) -> list[str]:
    """NVML's bit mask -> reason words, in bit order; unknown bits as hex."""
    words = [word for bit, word in THROTTLE_REASONS.items() if mask & bit]
    rest = mask & ~sum(THROTTLE_REASONS)
    return words + ([hex(rest)] if rest else [])


__all__ = ["FIELDS", "SITE_REASONS", "THROTTLE_REASONS", "throttle_words"]
