"""GPU monitoring with the stand-in pynvml (no GPU here): series format, position tags, degradation.

The real pynvml runs the same code in tests/gpu/test_nvml_real.py on a GPU machine.
"""
from __future__ import annotations

import json
import logging
import re
import subprocess
import sys
import threading

import pytest

from hpcnn.monitor import GpuSampler, PositionTag, open_nvml
from hpcnn.monitor.advice import THRESHOLDS
from hpcnn.monitor.fields import FIELDS, throttle_words
from hpcnn.monitor.series import ProgressFile, read_progress, read_series
from hpcnn.monitor.table import render
from tests.helpers import REPO
from tests.support import fake_pynvml

FAKE = {"HPCNN_NVML_MODULE": "tests.support.fake_pynvml"}


@pytest.fixture
def nvml():
    """The stand-in module, reset to its defaults before and after the test; no call may misuse it."""
    fake_pynvml.configure()
    yield fake_pynvml
    misuse = list(fake_pynvml.misuse)
    fake_pynvml.configure()
    assert misuse == [], f"NVML called the way nvidia-ml-py would reject: {misuse}"


def sample_rows(tmp_path, n=2, **config):
    fake_pynvml.configure(**config)
    with open_nvml(fake_pynvml) as reader:
        sampler = GpuSampler(tmp_path / "gpu" / "rank0.jsonl", interval_s=3600, nvml=reader, rank=0)
        assert sampler.start()
        for _ in range(n - 2):
            sampler.write()
        sampler.stop()  # start and stop each take a sample
    return [json.loads(line) for line in (tmp_path / "gpu" / "rank0.jsonl").read_text().splitlines()]


def test_series_rows_hold_every_supported_field_in_its_unit(nvml, tmp_path):
    rows = sample_rows(tmp_path, n=3, throttle=[0x4 | 0x40, 0], xid={"1": [79]})
    assert len(rows) == 6 and {r["gpu"] for r in rows} == {0, 1}
    first, gpu1 = rows[0], rows[1]
    assert set(first) <= set(FIELDS)
    assert first["util_percent"] == 87 and first["mem_total_mib"] == 81559 and first["power_w"] == 310
    assert first["mem_clock_mhz"] == 2619 and first["sm_clock_mhz"] == 1980 and first["power_limit_w"] == 700
    assert first["pcie_tx_mib_s"] == 4.0 and first["ecc_uncorrected"] == 0
    assert first["throttle"] == ["power cap", "hw thermal"] and gpu1["throttle"] == []
    assert first["energy_j"] >= 1000 and first["rank"] == 0 and first["stage"] == "train"
    assert "nvlink_tx_mib_s" not in first and rows[2]["nvlink_tx_mib_s"] >= 0  # a rate needs two samples
    assert [r.get("xid") for r in rows if r["gpu"] == 1] == [[79], None, None]  # each XID reported once


def test_throttle_reasons_in_words():
    assert throttle_words(0) == []
    assert throttle_words(0x1 | 0x20 | 0x80) == ["idle", "sw thermal", "power brake"]
    assert throttle_words(0x8000) == ["0x8000"]


def test_every_throttle_bit_is_a_constant_of_nvidia_ml_py():
    import pynvml

    from hpcnn.monitor.fields import THROTTLE_REASONS

    named = {getattr(pynvml, n) for n in dir(pynvml) if n.startswith(("nvmlClocksEventReason",
                                                                       "nvmlClocksThrottleReason"))}
    assert set(THROTTLE_REASONS) <= named, sorted(hex(b) for b in set(THROTTLE_REASONS) - named)


def test_the_stand_in_has_nvidia_ml_pys_signatures_and_constants():
    import inspect

    import pynvml

    for name, fn in vars(fake_pynvml).items():
        if name.startswith("nvml") and callable(fn) and not isinstance(fn, type):
            real = getattr(pynvml, name, None)
            assert real is not None, f"pynvml has no {name}"
            assert str(inspect.signature(fn)) == str(inspect.signature(real)), name
        elif name.startswith(("NVML_", "nvml")) and isinstance(fn, int):
            assert getattr(pynvml, name) == fn, name


def test_the_stand_in_rejects_what_nvidia_ml_py_rejects(nvml):
    nvml.nvmlInit()
    try:
        handle = nvml.nvmlDeviceGetHandleByIndex(0)
        with pytest.raises(nvml.NVMLError_InvalidArgument):
            nvml.nvmlDeviceGetTemperature(handle, 7)
        with pytest.raises(TypeError):
            nvml.nvmlDeviceGetFieldValues(handle, ["138"])
        bad_scope, per_link, total = nvml.nvmlDeviceGetFieldValues(handle, [(138, 99), 138, (138, 0xFFFFFFFF)])
        assert bad_scope.nvmlReturn == nvml.NVML_ERROR_INVALID_ARGUMENT
        assert per_link.scopeId == 0 and per_link.value.ullVal < total.value.ullVal  # a bare id reads link 0
        with pytest.raises(nvml.NVMLError_InvalidArgument):
            nvml.nvmlEventSetFree(object())
        with pytest.raises(nvml.NVMLError_NotFound):
            nvml.nvmlDeviceGetHandleByUUID("GPU-fake")  # NVML wants the whole UUID
    finally:
        nvml.nvmlShutdown()
    with pytest.raises(nvml.NVMLError_Uninitialized):
        nvml.nvmlDeviceGetCount()
    assert len(nvml.misuse) == 5
    nvml.misuse.clear()


def test_nvlink_rate_reads_the_all_links_aggregate(nvml):
    nvml.configure(nvlink_kib=1_000_000, nvlink_links=18)
    with open_nvml(nvml) as reader:
        gpu = reader.gpus[0]
        assert gpu.nvlink(10.0) is None                     # the first reading only sets the baseline
        nvml.CONFIG["nvlink_kib"] = 1_000_000 + 2 * 102_400  # 200 MiB more over 2 s
        assert gpu.nvlink(12.0) == pytest.approx((100.0, 100.0))


def test_nvml_is_shut_down_and_event_sets_freed_when_sampling_stops(nvml, tmp_path, monkeypatch, capsys):
    from hpcnn.monitor import snapshot

    monkeypatch.setenv("HPCNN_NVML_MODULE", "tests.support.fake_pynvml")
    sampler = GpuSampler(tmp_path / "gpu" / "rank0.jsonl", interval_s=3600)  # opens NVML itself
    assert sampler.start() and nvml.live_event_sets() == 2 and nvml.inits == 1
    sampler.stop()
    assert (nvml.inits, nvml.shutdowns, nvml.live_event_sets()) == (1, 1, 0)
    assert snapshot.main() == 0 and len(capsys.readouterr().out.splitlines()) == 2   # `hpcnn top` / `gpus`
    assert (nvml.inits, nvml.shutdowns, nvml.live_event_sets()) == (2, 2, 0)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")              # nothing visible: init given back at once
    assert open_nvml(nvml) is None and nvml.inits == nvml.shutdowns == 3
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES")
    nvml.configure(unsupported=["nvmlDeviceRegisterEvents"])   # a set that could not be registered is freed
    with open_nvml(nvml):
        assert nvml.live_event_sets() == 0
    assert nvml.inits == nvml.shutdowns == 1


def test_samples_carry_the_position_the_trainer_was_at(nvml, tmp_path):
    tag = PositionTag()
    sampler = GpuSampler(tmp_path / "s.jsonl", interval_s=3600, nvml=open_nvml(nvml, cuda_ordinal=0), tag=tag)
    sampler.start()                                       # stage setup
    tag.move(stage="train", phase="head", epoch=0, step=5)
    sampler.write()
    tag.move(stage="eval", step=10)
    sampler.write()
    sampler.stop()                                        # still eval
    rows = [json.loads(line) for line in (tmp_path / "s.jsonl").read_text().splitlines()]
    assert [(r["stage"], r.get("step")) for r in rows] == [("setup", None), ("train", 5), ("eval", 10), ("eval", 10)]
    assert rows[1]["phase"] == "head" and {r["gpu"] for r in rows} == {0}


def test_unsupported_fields_are_absent_and_not_asked_again(nvml, tmp_path):
    off = ["nvmlDeviceGetPcieThroughput", "nvmlDeviceGetTotalEnergyConsumption", "nvmlDeviceGetTotalEccErrors",
           "nvmlDeviceRegisterEvents"]
    rows = sample_rows(tmp_path, n=2, unsupported=off, nvlink=False)
    for key in ("pcie_tx_mib_s", "energy_j", "ecc_corrected", "nvlink_tx_mib_s", "xid"):
        assert all(key not in r for r in rows), key
    assert all(r["util_percent"] == 87 for r in rows)
    gpu = open_nvml(nvml).gpus[0]
    gpu.sample(0.0, "h")
    before = nvml.calls
    gpu.sample(1.0, "h")
    per_sample = nvml.calls - before
    nvml.configure(unsupported=[])
    gpu2 = open_nvml(nvml).gpus[0]
    gpu2.sample(0.0, "h")
    before = nvml.calls
    gpu2.sample(1.0, "h")
    assert per_sample < nvml.calls - before  # the unsupported calls were not made again


def test_no_driver_one_line_and_no_samples(nvml, tmp_path, caplog):
    nvml.configure(no_driver=True)
    caplog.set_level(logging.INFO, "hpcnn.monitor")
    assert open_nvml(nvml) is None
    sampler = GpuSampler(tmp_path / "gpu" / "rank0.jsonl", announce=True)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("HPCNN_NVML_MODULE", "tests.support.fake_pynvml")
        assert sampler.start() is False
    sampler.stop()
    assert not (tmp_path / "gpu").exists()
    lines = [r.getMessage() for r in caplog.records if r.name == "hpcnn.monitor"]
    assert len(lines) == 1 and "GPU monitoring off: no NVIDIA driver" in lines[0]


def test_missing_module_means_no_monitor(monkeypatch):
    monkeypatch.setenv("HPCNN_NVML_MODULE", "no_such_nvml_module")
    assert open_nvml() is None


def test_a_failing_sampler_never_raises_and_keeps_sampling(nvml, tmp_path, caplog):
    class Broken:
        calls = 0

        def sample(self):
            Broken.calls += 1
            if Broken.calls % 2:
                raise RuntimeError("NVML exploded")
            return [{"time": 1.0, "host": "h", "gpu": 0, "util_percent": 50.0}]

    caplog.set_level(logging.WARNING, "hpcnn.monitor")
    sampler = GpuSampler(tmp_path / "r.jsonl", interval_s=3600, nvml=Broken())
    assert sampler.start()
    for _ in range(4):
        sampler.write()
    sampler.stop()
    assert sampler.failures == 3 and sampler.samples == 3
    warnings = [r for r in caplog.records if "GPU sample failed" in r.getMessage()]
    assert len(warnings) == 1  # logged once, not every interval
    # an exception inside one field's call only removes that field
    nvml.configure(raise_in=["nvmlDeviceGetTemperature"])
    row = open_nvml(nvml).sample()[0]
    assert "temp_c" not in row and row["power_w"] == 310


def test_sampler_thread_samples_on_its_own(nvml, tmp_path):
    sampler = GpuSampler(tmp_path / "r.jsonl", interval_s=0.01, nvml=open_nvml(nvml))
    sampler.start()
    done = threading.Event()
    deadline_polls = 0
    while sampler.samples < 5 and deadline_polls < 2000:  # bounded poll, no sleeps as synchronisation
        done.wait(0.005)
        deadline_polls += 1
    sampler.stop()
    assert sampler.samples >= 5


def test_only_the_jobs_gpus(nvml, monkeypatch):
    nvml.configure(count=4)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "1,3")
    assert open_nvml(nvml).indices == [1, 3]
    assert open_nvml(nvml, cuda_ordinal=1).indices == [3]
    assert open_nvml(nvml, cuda_ordinal=0, uuid="GPU-fake-2").indices == [2]
    assert open_nvml(nvml, cuda_ordinal=1, uuid="GPU-unknown").indices == [3]  # UUID not found: the ordinal
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "GPU-fake-2")
    assert open_nvml(nvml).indices == [2]
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES")
    assert open_nvml(nvml).indices == [0, 1, 2, 3]


def test_progress_file_is_rate_limited_unless_forced(tmp_path):
    progress = ProgressFile(tmp_path, every_s=3600)
    progress.update({"stage": "train", "step": 1})
    progress.update({"stage": "train", "step": 2})      # within every_s: not rewritten
    assert read_progress(tmp_path)["step"] == 1
    progress.update({"stage": "eval", "step": 3}, force=True)  # a stage change, or the sampler thread
    first = read_progress(tmp_path)
    assert (first["stage"], first["step"]) == ("eval", 3)
    progress.update({"stage": "eval", "step": 3}, force=True)  # nothing moved: the file stays as it is
    assert read_progress(tmp_path) == first
    assert read_progress(tmp_path / "nowhere") is None


def test_series_reader_skips_a_half_written_line(tmp_path):
    (tmp_path / "gpu").mkdir()
    (tmp_path / "gpu" / "rank0.jsonl").write_text('{"time": 1, "host": "n1", "gpu": 0}\n{"time": 2, "ho')
    assert list(read_series(tmp_path)) == [("n1", 0)]


def test_table_shows_each_gpu_and_the_jobs_position(nvml):
    rows = open_nvml(nvml).sample()
    text = render(rows, {"stage": "train", "phase": "head", "epoch": 1, "step": 140})
    lines = text.splitlines()
    assert lines[0].split()[:3] == ["NODE", "GPU", "UTIL"] and len(lines) == 3
    assert "87%" in lines[1] and "310W" in lines[1] and "train head e2 step 140" in lines[1]


def test_docs_list_every_field_and_threshold():
    doc = (REPO / "docs" / "monitoring.md").read_text()
    missing = [f for f in FIELDS if f"`{f}`" not in doc]
    assert not missing, f"docs/monitoring.md lacks fields {missing}"
    for name, (value, _) in THRESHOLDS.items():
        assert re.search(rf"`{name}`\s*\|\s*{re.escape(str(value))}\s*\|", doc), f"threshold {name}={value} not in docs"


def test_gpus_command_with_the_stand_in(tmp_path):
    env = {**FAKE, "CUDA_VISIBLE_DEVICES": "1"}
    proc = _hpcnn("gpus", env=env)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.strip().splitlines()
    assert len(lines) == 2 and lines[1].split()[1] == "1" and "87%" in lines[1]
    off = _hpcnn("gpus", env={**FAKE, "HPCNN_FAKE_NVML": '{"no_driver": true}'})
    assert off.returncode == 0 and "no GPU visible to NVML" in off.stdout and len(off.stdout.splitlines()) == 1


def _hpcnn(*args, env):
    import os

    return subprocess.run([sys.executable, "-m", "hpcnn", *args], capture_output=True, text=True, timeout=120,
                          cwd=REPO, env={**os.environ, **env})


def test_monitor_and_its_cli_import_without_torch():
    code = "import sys; sys.modules['torch'] = None; import hpcnn.monitor, hpcnn.monitor.report, hpcnn.cli.monitor"
    assert subprocess.run([sys.executable, "-c", code], timeout=60).returncode == 0


def test_top_finds_a_jobs_run_directory_through_the_records(tmp_path, monkeypatch):
    from hpcnn.cli.monitor import find_run_dir
    from hpcnn.slurm.jobs.records import register

    monkeypatch.setenv("HPCNN_STATE_DIR", str(tmp_path / "state"))
    run = tmp_path / "run"
    run.mkdir()
    (run / "job.json").write_text("{}")
    register("101", run)
    sweep = tmp_path / "sweep"
    (sweep / "lr-0.1").mkdir(parents=True)
    (sweep / "sweep.json").write_text(json.dumps({"tasks": [{"index": 0, "job_id": "202_0", "run_dir": "lr-0.1"}]}))
    register("202", sweep)
    assert find_run_dir("101") == run
    assert find_run_dir("202_0") == sweep / "lr-0.1"
    assert find_run_dir("303") is None
