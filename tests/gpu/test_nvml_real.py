"""The real NVML path (nvidia-ml-py) during a real training job, and `hpcnn gpus` / `hpcnn report`.

Skipped cleanly where CUDA or the NVIDIA driver is absent (CI, laptops); CPU tests cover the same
code with the stand-in module (tests/unit/test_monitor*.py).
"""
from __future__ import annotations

import json

import pytest
import torch

from tests.helpers import run_hpcnn

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs an NVIDIA GPU")]


@pytest.fixture(autouse=True)
def real_nvml(monkeypatch):
    monkeypatch.delenv("HPCNN_NVML_MODULE", raising=False)
    pynvml = pytest.importorskip("pynvml")
    try:
        pynvml.nvmlInit()
    except pynvml.NVMLError as err:
        pytest.skip(f"no NVIDIA driver: {err}")
    yield pynvml
    pynvml.nvmlShutdown()


@pytest.fixture(scope="module")
def monitored_run(tmp_path_factory):
    """A compute-bound GPU job sampled every 0.2 s (ResNet-18, 64², bf16, 5 epochs): several samples."""
    root = tmp_path_factory.mktemp("gpu-monitor")
    proc = run_hpcnn("train", "model.name=resnet18", "data.image_size=64", "train.batch_size=256",
                     "train.amp=bf16", "train.channels_last=true", "train.epochs=5", "data.n_test=0",
                     "monitor.interval_s=0.2", "train.plots=false", f"--run-dir={root / 'run'}", timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return root / "run", proc


def test_real_samples_carry_nvml_fields_and_the_trainers_position(monitored_run):
    run_dir, proc = monitored_run
    rows = [json.loads(line) for line in (run_dir / "gpu" / "rank0.jsonl").read_text().splitlines()]
    assert len(rows) >= 3 and len({r["gpu"] for r in rows}) == 1  # this rank's own GPU only
    first = rows[0]
    for key in ("util_percent", "mem_used_mib", "mem_total_mib", "power_w", "temp_c", "sm_clock_mhz",
                "mem_clock_mhz", "throttle", "name"):
        assert key in first, key
    assert isinstance(first["throttle"], list) and all(isinstance(w, str) for w in first["throttle"])
    steps = [r["step"] for r in rows]
    assert steps == sorted(steps) and max(steps) > 0
    assert {"train"} <= {r["stage"] for r in rows}
    gpu = json.loads((run_dir / "summary.json").read_text())["gpu"]
    assert gpu["samples"] == len(rows) and gpu["energy_j"] > 0 and gpu["images_per_joule"] > 0
    assert gpu["stages"]["train"]["util_mean_percent"] > 0
    assert gpu["per_gpu"][0]["mem_max_mib"] > 0
    assert "GPU: 1 GPU(s) on 1 node(s)" in proc.stdout
    assert json.loads((run_dir / "progress.json").read_text())["stage"] == "done"


def test_gpus_command_lists_this_nodes_gpus():
    proc = run_hpcnn("gpus", timeout=120)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.strip().splitlines()
    assert lines[0].split()[:2] == ["NODE", "GPU"] and len(lines) >= 2
    assert "%" in lines[1] and "W" in lines[1]
    rows = json.loads(run_hpcnn("gpus", "--json", timeout=120).stdout)
    assert rows and all("util_percent" in r and "name" in r for r in rows)


def test_report_draws_the_real_series(monitored_run, tmp_path):
    run_dir, _ = monitored_run
    proc = run_hpcnn("report", str(run_dir), "--out", str(tmp_path), timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert sorted(p.name for p in tmp_path.glob("*.png")) == ["gpu_clocks.png", "gpu_memory.png", "gpu_power.png",
                                                               "gpu_utilisation.png"]
    assert "GPU: 1 GPU(s)" in (tmp_path / "gpu_report.md").read_text()


def test_each_cuda_device_is_the_nvml_gpu_with_its_uuid(real_nvml, monkeypatch):
    """torch's UUID, CUDA's ordinal resolved through CUDA_VISIBLE_DEVICES / PCI order, and a UUID entry all
    name the same NVML GPU; opening and closing leaves NVML's init count as it was."""
    from hpcnn.monitor import open_nvml
    from hpcnn.train.callbacks import cuda_uuid

    before = real_nvml._nvmlLib_refcount
    for i in range(torch.cuda.device_count()):
        uuid = cuda_uuid(torch.device(f"cuda:{i}"))
        with open_nvml(uuid=uuid, cuda_ordinal=i) as by_uuid, open_nvml(cuda_ordinal=i) as by_ordinal:
            assert by_uuid.indices == by_ordinal.indices
            nvml_uuid = real_nvml.nvmlDeviceGetUUID(by_uuid.gpus[0].handle)
            assert nvml_uuid.lower().endswith(uuid.lower()), (nvml_uuid, uuid)
        with monkeypatch.context() as env:
            env.setenv("CUDA_VISIBLE_DEVICES", nvml_uuid)
            with open_nvml() as by_entry:
                assert by_entry.indices == by_ordinal.indices
        assert by_uuid.gpus[0].events is None  # event set freed on close
    assert real_nvml._nvmlLib_refcount == before
