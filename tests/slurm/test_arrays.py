"""Sweeps on the real local Slurm: one array per sweep, ranked results, automatic splitting."""
from __future__ import annotations

import json

import yaml

import hpcnn
from hpcnn.slurm import JobArray

from tests.slurm.support import (JOB_TIMEOUT_S, POLL_MAX_S, hpcnn as run_cli, hpcnn_json, sacct_rows, state_dir,
                                 tiny)

__all__ = ["state_dir"]


def test_grid_sweep_is_one_array_and_results_rank_it(slurm_cluster, tmp_path, state_dir):
    sweep = tmp_path / "grid.yaml"
    sweep.write_text(yaml.safe_dump({"name": "grid", "overrides": tiny(tmp_path, "train.epochs=2"),
                                     "grid": {"optim.lr": [0.003, 0.03], "model.dropout": [0.0, 0.3]},
                                     "max_parallel": 4}, sort_keys=False))
    out = hpcnn_json("sweep", sweep, "--profile", "local")  # a new process; returns at once
    assert len(out["arrays"]) == 1 and out["tasks"] == 4
    array_id = out["arrays"][0]["job_id"]

    handle = JobArray.from_dir(out["sweep_dir"])
    statuses = handle.wait(timeout_s=2 * JOB_TIMEOUT_S, poll_max_s=POLL_MAX_S)
    assert [s.state for s in statuses] == ["COMPLETED"] * 4
    rows = sacct_rows(slurm_cluster, array_id)
    assert sorted(r["JobID"] for r in rows) == [f"{array_id}_{i}" for i in range(4)], "one array id, 4 tasks"
    assert {r["JobName"] for r in rows} == {"hpcnn-grid"}
    script = (handle.sweep_dir / "submission-0.sbatch").read_text()
    assert "#SBATCH --array=0-3%4" in script

    ranked = hpcnn_json("results", out["sweep_dir"])  # a new process reads the sweep back
    values = [r["value"] for r in ranked]
    assert [r["rank"] for r in ranked] == [1, 2, 3, 4] and values == sorted(values, reverse=True)
    assert {tuple(r["overrides"]) for r in ranked} == {(f"optim.lr={lr}", f"model.dropout={d}")
                                                       for lr in (0.003, 0.03) for d in (0.0, 0.3)}
    for r in ranked:  # each task trained its own overrides in its own run directory
        cfg = yaml.safe_load(open(f"{r['run_dir']}/config.resolved.yaml"))
        assert r["overrides"] == [f"optim.lr={cfg['optim']['lr']}", f"model.dropout={cfg['model']['dropout']}"]
    table = run_cli("results", out["sweep_dir"]).stdout.splitlines()
    assert table[0].split()[:4] == ["rank", "task", "job", "state"] and table[1].split()[0] == "1"
    status = run_cli("status", array_id).stdout
    assert "4 COMPLETED" in status


def test_sweep_larger_than_max_array_size_is_split_and_completes(slurm_cluster, tmp_path, state_dir):
    sweep = hpcnn.submit_array(None, grid={"optim.lr": [0.001, 0.002, 0.003]}, profile="local",
                               overrides=tiny(tmp_path, "train.epochs=1"), name="split", max_array_size=2,
                               max_parallel=2)
    arrays = sweep.record["arrays"]
    assert [(a["offset"], a["count"]) for a in arrays] == [(0, 2), (2, 1)]
    for array in arrays:  # each array is indexed from 0, as MaxArraySize demands
        assert [t.job_id for t in sweep.tasks[array["offset"]:array["offset"] + array["count"]]] == \
               [f"{array['job_id']}_{i}" for i in range(array["count"])]
    statuses = sweep.wait(timeout_s=3 * JOB_TIMEOUT_S, poll_max_s=POLL_MAX_S)
    assert all(s.succeeded for s in statuses), [s.reason for s in statuses]
    for array in arrays:
        assert len(sacct_rows(slurm_cluster, array["job_id"])) == array["count"]
    later = json.loads((sweep.sweep_dir / "sweep.json").read_text())
    assert later["arrays"] == arrays and len(later["tasks"]) == 3
    second = (sweep.sweep_dir / "submission-1.sbatch").read_text()
    assert "#SBATCH --dependency=afterany:" + arrays[0]["job_id"] in second
    assert [r["rank"] for r in sweep.results()] == [1, 2, 3]


def test_rerunning_a_sweep_dir_resubmits_only_the_cancelled_task_and_results_show_its_latest_attempt(
        slurm_cluster, tmp_path, state_dir):
    sweep = hpcnn.submit_array(None, runs=[["optim.lr=0.003"], ["optim.lr=0.01"], ["optim.lr=0.03"]],
                               profile="local", overrides=tiny(tmp_path, "train.epochs=1"), name="rerun",
                               max_parallel=2)  # %2: task 2 waits until task 0 or 1 ends, so it is cancelled pending
    first = sweep.array_ids[0]
    run_cli("cancel", f"{first}_2")
    kept = run_cli("runs", "rm", sweep.sweep_dir, "--yes", check=False)  # its jobs are queued: never removed
    assert kept.returncode == 1 and "still in the Slurm queue" in kept.stderr and sweep.sweep_dir.is_dir()
    statuses = sweep.wait(timeout_s=3 * JOB_TIMEOUT_S, poll_max_s=POLL_MAX_S)  # ends: task 2 counts as gone
    assert [s.state for s in statuses[:2]] == ["COMPLETED", "COMPLETED"], [s.reason for s in statuses]
    # Slurm keeps no accounting row for an array task cancelled before it was split off: gone, not waited for
    assert statuses[2].state in ("CANCELLED", "UNKNOWN") and statuses[2].finished and not statuses[2].succeeded

    out = hpcnn_json("sweep", sweep.sweep_dir)  # a new shell: only the cancelled task goes out again
    assert out["resubmitted"] == [2] and len(out["arrays"]) == 1
    second = out["arrays"][0]
    assert "#SBATCH --array=2%1" in (sweep.sweep_dir / "submission-1.sbatch").read_text()
    follow = run_cli("logs", f"{second}_2", "--follow", "--interval", "1", timeout=JOB_TIMEOUT_S)
    assert "has left the queue" in follow.stderr and follow.stdout.strip()
    assert [r["JobID"] for r in sacct_rows(slurm_cluster, second)] == [f"{second}_2"], "one new task, index 2"

    ranked = {r["index"]: r for r in hpcnn_json("results", sweep.sweep_dir)}
    assert ranked[2]["job_id"] == f"{second}_2" and ranked[2]["state"] == "COMPLETED" and ranked[2]["rank"]
    record = json.loads((sweep.sweep_dir / "sweep.json").read_text())
    assert record["tasks"][2]["previous_jobs"] == [f"{first}_2"] and record["tasks"][0]["job_id"] == f"{first}_0"
    again = run_cli("sweep", sweep.sweep_dir).stdout
    assert again.startswith("nothing to resubmit") and "3 COMPLETED" in again
