"""`hpcnn compare SWEEP_DIR` on a real sweep run by the local Slurm: finished tasks drawn, a failed one listed."""
from __future__ import annotations

import json

import numpy as np
from PIL import Image

import hpcnn

from tests.slurm.support import JOB_TIMEOUT_S, POLL_MAX_S, hpcnn as run_cli, hpcnn_json, state_dir, tiny

__all__ = ["state_dir"]


def test_compare_a_finished_sweep_names_the_differing_keys_and_draws_the_curves(slurm_cluster, tmp_path, state_dir):
    # The last task fails in the job, past pre-flight: the login node checks that the weights file exists,
    # only the job (with torch) finds that it is not a checkpoint.
    weights = tmp_path / "not-a-checkpoint.pth"
    weights.write_bytes(b"these bytes are not a torch checkpoint")
    runs = [["optim.lr=0.003"], ["optim.lr=0.03"], [f"model.weights={weights}"]]
    sweep = hpcnn.submit_array(None, runs=runs, profile="local", overrides=tiny(tmp_path, "train.epochs=2"),
                               name="cmp")
    statuses = sweep.wait(timeout_s=2 * JOB_TIMEOUT_S, poll_max_s=POLL_MAX_S)
    assert [s.state for s in statuses] == ["COMPLETED", "COMPLETED", "FAILED"], [s.reason for s in statuses]

    data = hpcnn_json("compare", sweep.sweep_dir)  # a new process, as from another shell
    assert data["differing_keys"] == ["model.weights", "optim.lr"]
    rows = data["runs"]
    assert [r["name"] for r in rows] == ["task-000", "task-001", "task-002"]
    assert [r["state"] for r in rows] == ["completed", "completed", "FAILED"]
    assert [r["config"]["optim.lr"] for r in rows] == [0.003, 0.03, 0.003]
    assert rows[0]["label"] == "model.weights=null optim.lr=0.003"
    assert "model.weights" in rows[2]["reason"] and rows[2]["epochs"] == 0
    for row, status in zip(rows[:2], statuses):
        assert row["metrics"]["val.accuracy"] == status.metric("val.accuracy") is not None
        assert row["epochs"] == 2

    png = sweep.sweep_dir / "compare.png"
    assert data["png"] == str(png)
    with Image.open(png) as image:
        assert image.format == "PNG" and image.size[0] >= 800 and image.size[1] >= 300
        assert np.asarray(image.convert("L"), dtype=np.float32).std() > 5

    table = run_cli("compare", sweep.sweep_dir).stdout
    assert table.splitlines()[0].split()[:4] == ["run", "model.weights", "optim.lr", "state"]
    failed = [line for line in table.splitlines() if line.startswith("task-002")]
    assert len(failed) == 1 and "FAILED" in failed[0] and "<- " in failed[0]
    assert json.loads((sweep.sweep_dir / "sweep.json").read_text())["tasks"][2]["overrides"] == runs[2]
