"""The course lessons (jobs/lessons/) measured: each shows what it claims to, on the embedded galaxies.

The runs are the lesson files as shipped (the same tasks `hpcnn sweep` sends to Slurm), trained once
per session and shared with test_jobs_accuracy.py (tests/integration/lesson_runs.py).
"""
from __future__ import annotations

import dataclasses
import json

import pytest
import torch

from hpcnn.config import load_job
from hpcnn.data.marker import marker_mask
from hpcnn.explain import gradcam
from hpcnn.explain.report import load_run_model
from hpcnn.lessons import lesson_tasks, split_accuracy
from hpcnn.rundir import config_for_resume
from hpcnn.train.inputs import job_inputs
from tests.helpers import REPO
from tests.integration.lesson_runs import lesson_runs

LESSONS = REPO / "jobs" / "lessons"


def heat_in_marker(run_dir) -> float:
    """Fraction of the Grad-CAM heat (default layer, predicted class) on the test images inside the marker square."""
    cfg = config_for_resume(run_dir)
    splits, normalize = job_inputs(cfg, announce=False)
    model, _ = load_run_model(run_dir, cfg, splits.classes)
    heat, _, _ = gradcam(model, normalize(splits.test.images))
    inside = marker_mask(cfg.data.image_size, cfg.data.marker.size)
    return float(heat[:, inside].sum() / heat.sum())


@pytest.fixture(scope="module")
def shortcut():
    return lesson_runs(LESSONS / "shortcut.yaml")


@pytest.mark.slow
def test_shortcut_model_looks_at_the_marker_and_collapses_on_test(shortcut):
    run_dir, summary = shortcut["shortcut_marker"]
    val, test = summary["metrics"]["val"]["accuracy"], summary["metrics"]["test"]["accuracy"]
    assert val - test >= 0.30, (val, test)
    mass = heat_in_marker(run_dir)
    assert mass >= 0.5, mass


@pytest.mark.slow
def test_control_model_looks_at_the_galaxy(shortcut):
    run_dir, summary = shortcut["shortcut_control"]
    val, test = summary["metrics"]["val"]["accuracy"], summary["metrics"]["test"]["accuracy"]
    assert val > 0.5 and abs(val - test) < 0.1, (val, test)  # it learned galaxies, and they generalise
    mass = heat_in_marker(run_dir)  # the same corner square, on images without a marker
    assert mass <= 0.10, mass


def test_shortcut_lesson_differs_only_in_the_marker():
    marker, control = (task.config for task in lesson_tasks(LESSONS / "shortcut.yaml"))
    assert marker.data.marker.enabled and not control.data.marker.enabled
    assert marker.model == control.model and marker.train == control.train and marker.optim == control.optim


@pytest.fixture(scope="module")
def overfitting():
    runs = lesson_runs(LESSONS / "overfitting.yaml")
    return {name: (split_accuracy(run_dir, "train"), summary["metrics"]["val"]["accuracy"])
            for name, (run_dir, summary) in runs.items()}


@pytest.mark.slow
def test_augmentation_and_dropout_shrink_the_gap_and_raise_validation_accuracy(overfitting):
    (train_plain, val_plain), (train_aug, val_aug) = overfitting["overfit_plain"], overfitting["overfit_aug_dropout"]
    assert train_plain > 0.99  # 600 images memorised
    assert train_aug - val_aug < train_plain - val_plain - 0.1, overfitting
    assert val_aug > val_plain, overfitting


def weights(run_dir) -> torch.Tensor:
    """Every penalised weight (conv kernels, dense matrices) of a run's final model, flattened."""
    state = torch.load(run_dir / "checkpoints" / "model_final.pt", weights_only=True)["model"]
    return torch.cat([v.flatten() for k, v in state.items() if k.endswith("weight") and v.ndim >= 2])


@pytest.fixture(scope="module")
def penalties():
    return lesson_runs(LESSONS / "penalties.yaml")


@pytest.mark.slow
def test_penalties_shrink_the_weights(penalties):
    plain, l2, l1 = (weights(penalties[name][0]) for name in ("no_penalty", "l2", "l1"))
    assert l2.square().sum() < 0.5 * plain.square().sum()
    assert l1.abs().sum() < 0.5 * plain.abs().sum()
    assert (l1.abs() < 1e-3).float().mean() > (plain.abs() < 1e-3).float().mean() + 0.1  # L1: exact-ish zeros


@pytest.mark.slow
def test_early_stopping_ends_the_run_and_keeps_the_best_epoch(penalties):
    _, summary = penalties["early_stopping"]
    _, full = penalties["no_penalty"]
    assert summary["status"] == "early_stopped" and summary["epochs_run"] < full["epochs_run"]
    assert summary["monitor"]["best"] == pytest.approx(summary["metrics"]["val"]["accuracy"])  # the best epoch kept
    assert summary["metrics"]["val"]["accuracy"] >= full["metrics"]["val"]["accuracy"] - 0.02  # at no loss


def test_mlp_vs_cnn_lesson_holds_the_shipped_mlp_baseline():
    cnn, mlp = (task.config for task in lesson_tasks(LESSONS / "mlp_vs_cnn.yaml"))
    shipped = load_job(REPO / "jobs" / "mlp_baseline.yaml")
    assert dataclasses.replace(mlp, slurm=shipped.slurm) == shipped  # the same job (the array has its own request)
    assert cnn.model.name == "simple_cnn" and cnn.data == mlp.data and cnn.train == mlp.train


@pytest.mark.slow
def test_lessons_runner_prints_a_row_per_task_and_reuses_finished_runs(tmp_path, capsys):
    from hpcnn.cli import main as hpcnn_main

    def main(argv):
        return hpcnn_main(["lessons", *argv])

    tiny = ["data.n_train=64", "data.n_val=32", "data.n_test=32", "train.epochs=1", "train.plots=false"]
    args = [str(LESSONS / "shortcut.yaml"), *tiny, "--runs-dir", str(tmp_path)]
    assert main(args) == 0
    rows = json.loads((tmp_path / "lesson_shortcut" / "lesson.json").read_text())
    assert "shortcut_marker" in capsys.readouterr().out
    assert [r["name"] for r in rows] == ["shortcut_marker", "shortcut_control"]
    for row in rows:
        assert 0 <= row["train_accuracy"] <= 1 and row["gap"] == pytest.approx(row["train_accuracy"]
                                                                                - row["val_accuracy"], abs=1e-3)
    marker_dir = tmp_path / "lesson_shortcut" / "00-shortcut_marker"
    stamp = (marker_dir / "summary.json").stat().st_mtime_ns
    assert main([*args, "--task", "0"]) == 0  # finished: read back, not trained again
    assert (marker_dir / "summary.json").stat().st_mtime_ns == stamp
    rows = json.loads((tmp_path / "lesson_shortcut" / "lesson.json").read_text())
    assert [r["name"] for r in rows] == ["shortcut_marker"]


@pytest.mark.parametrize("lesson", ["mlp_vs_cnn", "overfitting", "optimizers", "shortcut", "penalties"])
def test_each_lesson_is_one_slurm_array(lesson):
    from hpcnn.slurm.jobs.groups import plan_array

    plan = plan_array(str(LESSONS / f"{lesson}.yaml"), profile="local")  # pre-flight and render, nothing queued
    assert len(plan.arrays) == 1 and len(plan.tasks) == len(lesson_tasks(LESSONS / f"{lesson}.yaml")) >= 2
