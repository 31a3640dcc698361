"""Learning-rate schedules and the linear scaling rule."""
from __future__ import annotations

import pytest

from hpcnn.config import load_job
from hpcnn.train.schedule import lr_at, scaled_lr


def sched(*overrides):
    return load_job(None, list(overrides)).schedule


def test_warmup_then_cosine_to_floor():
    s = sched("schedule.name=cosine", "schedule.warmup_epochs=1", "schedule.warmup_start_factor=0.1",
              "schedule.min_lr_factor=0.01")
    lrs = [lr_at(i, 100, 10, 1.0, s) for i in range(101)]
    assert lrs[0] == pytest.approx(0.1) and lrs[5] == pytest.approx(0.55)
    assert lrs[10] == pytest.approx(1.0)
    assert all(a >= b for a, b in zip(lrs[10:], lrs[11:]))  # monotone decay after warmup
    assert lrs[100] == pytest.approx(0.01)


def test_step_and_constant():
    s = sched("schedule.name=step", "schedule.warmup_epochs=0", "schedule.step_epochs=2", "schedule.gamma=0.5")
    assert [lr_at(i * 10, 100, 10, 1.0, s) for i in (0, 1, 2, 3, 4)] == [1.0, 1.0, 0.5, 0.5, 0.25]
    c = sched("schedule.name=constant", "schedule.warmup_epochs=0")
    assert lr_at(77, 100, 10, 0.3, c) == 0.3


def test_onecycle_peaks_at_30_percent():
    s = sched("schedule.name=onecycle")
    lrs = [lr_at(i, 100, 10, 1.0, s) for i in range(100)]
    assert max(range(100), key=lambda i: lrs[i]) == 30


def test_linear_scaling_rule():
    s = sched("schedule.scale_lr=linear", "schedule.reference_batch=256")
    assert scaled_lr(0.1, 1024, s) == pytest.approx(0.4)
    assert scaled_lr(0.1, 1024, sched()) == pytest.approx(0.1)  # off by default
