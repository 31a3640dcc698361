"""The product's first promise: the README's main command trains a CNN to >=90% on CPU in <5 min,
and the MLP baseline with the same budget ends at least 10 points lower."""
from __future__ import annotations

import json
import time

import pytest

from tests.helpers import run_hpcnn

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def default_run(tmp_path_factory):
    runs = tmp_path_factory.mktemp("default")
    start = time.monotonic()
    proc = run_hpcnn("train", f"train.runs_dir={runs}", timeout=600)
    wall = time.monotonic() - start
    assert proc.returncode == 0, proc.stderr[-3000:]
    run_dir = next(runs.iterdir())
    return run_dir, json.loads((run_dir / "summary.json").read_text()), wall, proc


def test_default_cnn_reaches_90_percent_in_under_5_minutes(default_run):
    run_dir, summary, wall, proc = default_run
    assert summary["metrics"]["val"]["accuracy"] >= 0.90, summary["metrics"]["val"]["accuracy"]
    assert summary["metrics"]["test"]["accuracy"] >= 0.88
    assert wall < 300, f"default job took {wall:.0f} s"
    for name in ("summary.json", "metrics.jsonl", "config.resolved.yaml", "learning_curve.png",
                 "confusion_matrix.png", "checkpoints/best.pt", "checkpoints/model_final.pt"):
        assert (run_dir / name).exists(), name
    assert list((run_dir / "tb").glob("events.out.tfevents.*"))
    assert f"run directory: {run_dir}" in proc.stdout
    # batch-log format: timestamped lines, no carriage-return progress spam when not on a terminal
    assert "\r" not in proc.stdout and proc.stdout.startswith("[20")
    assert summary["images_per_second"] > 0 and summary["skipped_files"] == 0


def test_mlp_baseline_is_at_least_10_points_lower(default_run, tmp_path):
    _, cnn, _, _ = default_run
    proc = run_hpcnn("train", "jobs/mlp_baseline.yaml", f"train.runs_dir={tmp_path}", timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    run_dir = proc.stdout.strip().splitlines()[-1].split("run directory: ")[-1]
    mlp = json.loads(open(f"{run_dir}/summary.json").read())
    gap = cnn["metrics"]["val"]["accuracy"] - mlp["metrics"]["val"]["accuracy"]
    assert gap >= 0.10, f"CNN {cnn['metrics']['val']['accuracy']:.3f} vs MLP {mlp['metrics']['val']['accuracy']:.3f}"
