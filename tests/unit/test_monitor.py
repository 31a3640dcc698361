"""GPU monitoring with a fake NVML (no GPU here); the real path runs in tests/gpu/ on a GPU machine."""
from __future__ import annotations

import json
import subprocess
import sys
from types import SimpleNamespace

import pytest

from hpcnn.monitor import GpuSampler, open_nvml, summarize


class NotSupported(Exception):
    pass


class FakeNvml:
    """The handful of pynvml calls hpcnn makes; energy and power grow with each sample."""
    NVML_TEMPERATURE_GPU = 0
    NVML_CLOCK_SM = 1

    def __init__(self, count=2, util=80, no_energy=False):
        self.count, self.util, self.no_energy, self.calls = count, util, no_energy, 0

    def nvmlInit(self):
        pass

    def nvmlDeviceGetCount(self):
        return self.count

    def nvmlDeviceGetHandleByIndex(self, i):
        return i

    def nvmlDeviceGetName(self, h):
        return "Fake H100"

    def nvmlDeviceGetUtilizationRates(self, h):
        return SimpleNamespace(gpu=self.util, memory=10)

    def nvmlDeviceGetMemoryInfo(self, h):
        return SimpleNamespace(used=40 * 2**30, total=80 * 2**30)

    def nvmlDeviceGetPowerUsage(self, h):
        return 300_000  # mW

    def nvmlDeviceGetTotalEnergyConsumption(self, h):
        if self.no_energy:
            raise NotSupported()
        self.calls += 1
        return 1_000_000 + 600_000 * self.calls  # mJ

    def nvmlDeviceGetTemperature(self, h, kind):
        return 61

    def nvmlDeviceGetClockInfo(self, h, kind):
        raise NotSupported()  # unsupported fields read as None, never raise


def test_no_driver_means_no_monitor():
    class Missing(FakeNvml):
        def nvmlInit(self):
            raise RuntimeError("NVML Shared Library Not Found")

    assert open_nvml(Missing()) is None


def test_visible_devices_and_ordinal(monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "1,3")
    nv = open_nvml(FakeNvml(count=4), cuda_ordinal=1)
    assert nv.indices == [3]
    s = nv.sample()[0]
    assert s.util_percent == 80 and s.power_w == 300 and s.sm_clock_mhz is None and s.mem_total_mib == 81920


def test_sampler_writes_jsonl_and_summary_reports_energy(tmp_path):
    (tmp_path / "gpu").mkdir()
    with GpuSampler(tmp_path / "gpu" / "rank0.jsonl", interval_s=0.01, nvml=open_nvml(FakeNvml(count=1))):
        pass  # start and stop each take a sample: at least two rows
    rows = [json.loads(x) for x in (tmp_path / "gpu" / "rank0.jsonl").read_text().splitlines()]
    assert len(rows) >= 2 and rows[0]["tag"] == "train"
    s = summarize(tmp_path, images=1000)
    assert s["gpus"] == 1 and s["util_mean_percent"] == 80 and s["mem_max_fraction"] == 0.5
    assert s["energy_j"] == pytest.approx(600.0 * (len(rows) - 1))
    assert s["energy_per_image_j"] == pytest.approx(s["energy_j"] / 1000)
    assert s["notes"] == []


def test_low_utilisation_gives_advice(tmp_path):
    (tmp_path / "gpu").mkdir()
    with GpuSampler(tmp_path / "gpu" / "rank0.jsonl", interval_s=0.01, nvml=open_nvml(FakeNvml(util=30,
                                                                                              no_energy=True))):
        pass
    s = summarize(tmp_path)
    assert any("input pipeline" in n for n in s["notes"])
    assert s["energy_j"] >= 0  # from power x time when the counter is unsupported


def test_no_samples_no_summary(tmp_path):
    assert summarize(tmp_path) is None


def test_monitor_imports_without_torch():
    code = "import sys; sys.modules['torch'] = None; import hpcnn.monitor"
    assert subprocess.run([sys.executable, "-c", code], timeout=60).returncode == 0
