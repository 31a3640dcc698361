"""A real training run sampled through the stand-in NVML: every sample carries the trainer's position.

The stand-in replaces only the pynvml import (HPCNN_NVML_MODULE); the Trainer, its events, the
sampler thread, the series files, progress.json and the summary are the real ones.
"""
from __future__ import annotations

import json
import time

from hpcnn.monitor.series import read_progress
from hpcnn.train.events import Callback
from tests.helpers import TINY

POLL_TIMEOUT_S = 60


def rows_of(path):
    try:
        text = path.read_text()
    except FileNotFoundError:
        return []
    return [json.loads(line) for line in text.splitlines() if line.endswith("}")]


class WaitForSample(Callback):
    """At each new position, wait (bounded poll) until the sampler has written a row tagged with it."""

    def __init__(self, series):
        self.series, self.seen = series, []

    def _wait(self, stage, step):
        self.seen.append((stage, step))
        deadline = time.monotonic() + POLL_TIMEOUT_S
        while not any(r.get("stage") == stage and r.get("step") == step for r in rows_of(self.series)):
            assert time.monotonic() < deadline, f"no sample tagged {stage} step {step}"
            time.sleep(0.02)

    def on_stage(self, trainer, stage, global_step):
        self._wait(stage, global_step)

    def on_log(self, trainer, p):
        if p.step == 10:  # one log point per epoch is enough
            self._wait("train", p.global_step)


def test_samples_line_up_with_training_evaluation_and_checkpoints(tmp_path, monkeypatch):
    from hpcnn.config import load_job
    from hpcnn.run import run_job

    monkeypatch.setenv("HPCNN_NVML_MODULE", "tests.support.fake_pynvml")
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "1")  # the job's GPU: only it is sampled
    from tests.support import fake_pynvml

    fake_pynvml.configure()
    run_dir = tmp_path / "run"
    # the fake GPU is only watched: training on the CPU is asked for, not a GPU left idle by accident
    cfg = load_job(None, [*TINY, "train.device=cpu", "monitor.interval_s=0.1", f"train.runs_dir={tmp_path}"])
    waiter = WaitForSample(run_dir / "gpu" / "rank0.jsonl")
    result = run_job(cfg, run_dir, callbacks=[waiter])
    assert result.status == "completed"
    steps = 19  # digits train split / batch 64
    assert {("eval", steps), ("checkpoint", 2 * steps), ("test", 2 * steps)} <= set(waiter.seen)
    assert ("train", steps + 10) in waiter.seen

    rows = rows_of(run_dir / "gpu" / "rank0.jsonl")
    assert {r["gpu"] for r in rows} == {1} and all(r["rank"] == 0 for r in rows)
    published = set(waiter.seen) | {("setup", 0), ("done", 2 * steps)}
    published |= {("train", s) for s in range(0, 2 * steps + 1, 5)} | {("train", steps + s) for s in range(0, steps, 5)}
    assert {(r["stage"], r["step"]) for r in rows} <= published
    times = [r["time"] for r in rows]
    assert times == sorted(times)
    assert [r["step"] for r in rows] == sorted(r["step"] for r in rows)  # positions only move forward
    assert all(r["epoch"] == r["step"] // steps or r["stage"] == "done" for r in rows)

    assert read_progress(run_dir)["stage"] == "done"
    gpu = json.loads((run_dir / "summary.json").read_text())["gpu"]
    assert gpu["gpus"] == 1 and gpu["samples"] == len(rows)
    assert {"train", "eval", "checkpoint", "test"} <= set(gpu["stages"])
    assert gpu["energy_j"] > 0 and gpu["images_per_joule"] > 0
    assert [a["rule"] for a in gpu["advice"]] == ["memory_headroom"]  # 20 GB of 80 GB used
    # the sampler gave NVML back when training ended: every init shut down, the XID event set freed
    assert fake_pynvml.inits == fake_pynvml.shutdowns >= 1 and fake_pynvml.live_event_sets() == 0
    assert fake_pynvml.misuse == []


def test_monitoring_off_without_a_driver_changes_nothing(tmp_path, monkeypatch, capsys):
    from hpcnn.config import load_job
    from hpcnn.run import run_job

    monkeypatch.setenv("HPCNN_NVML_MODULE", "tests.support.fake_pynvml")
    monkeypatch.setenv("HPCNN_FAKE_NVML", '{"no_driver": true}')
    from tests.support import fake_pynvml

    fake_pynvml.configure()
    try:
        cfg = load_job(None, [*TINY, f"train.runs_dir={tmp_path}"])
        result = run_job(cfg, tmp_path / "run")
    finally:
        monkeypatch.delenv("HPCNN_FAKE_NVML")
        fake_pynvml.configure()
    assert result.status == "completed" and "gpu" not in result.summary
    out = capsys.readouterr()
    off = [line for line in (out.out + out.err).splitlines() if "GPU" in line]
    assert len(off) == 1 and off[0].endswith("GPU monitoring off: no NVIDIA driver (NVML Shared Library Not Found)")
    assert not (tmp_path / "run" / "gpu").exists()
