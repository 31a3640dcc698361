"""Submitting training jobs to the real local Slurm, and following them from new processes."""
from __future__ import annotations

import json

import pytest

import hpcnn
from hpcnn.errors import SubmissionError
from hpcnn.slurm import JobHandle

from tests.slurm.support import (JOB_TIMEOUT_S, POLL_MAX_S, hpcnn as run_cli, hpcnn_json, read_summary, sacct_rows,
                                 state_dir, steps_finished, tiny, wait_until)

__all__ = ["state_dir"]


def test_python_api_submit_completes_and_new_processes_see_the_summary(slurm_cluster, tmp_path, state_dir):
    handle = hpcnn.submit(None, "local", overrides=tiny(tmp_path, "name=api-job"))
    assert handle.run_dir.parent == tmp_path / "runs"
    record = json.loads((handle.run_dir / "job.json").read_text())
    assert record["job_id"] == handle.job_id and record["profile"] == "local"
    assert "#SBATCH --partition=debug" in (handle.run_dir / "submission.sbatch").read_text()

    summary = handle.result(timeout_s=JOB_TIMEOUT_S, poll_max_s=POLL_MAX_S)
    assert summary["status"] == "completed" and summary == read_summary(handle.run_dir)
    val = summary["metrics"]["val"]["accuracy"]
    assert sacct_rows(slurm_cluster, handle.job_id)[0]["JobName"] == "hpcnn-api-job"

    by_id = hpcnn_json("status", handle.job_id)  # a new process, only the job id in hand
    assert by_id["state"] == "COMPLETED" and by_id["val_accuracy"] == pytest.approx(val)
    assert by_id["run_dir"] == str(handle.run_dir)
    by_dir = hpcnn_json("status", handle.run_dir)
    assert by_dir["job_id"] == handle.job_id and by_dir["summary"]["status"] == "completed"
    text = run_cli("status", handle.job_id).stdout
    assert f"job {handle.job_id}: COMPLETED" in text and f"val.accuracy {val:.4f}" in text
    logs = run_cli("logs", handle.job_id, "--tail", "200", "--stream", "out").stdout
    assert "epoch 2/2" in logs and "Job completed successfully" in logs

    again = JobHandle.from_id(handle.job_id)  # reattach from the record, as a new shell would
    assert again.run_dir == handle.run_dir and again.status().succeeded


def test_cli_submit_returns_at_once_and_status_follows(slurm_cluster, tmp_path, state_dir):
    out = hpcnn_json("submit", *tiny(tmp_path, "name=cli-job"), "--profile", "local", "--time", "00:10:00")
    job_id, run_dir = out["job_id"], out["run_dir"]
    assert out["resources"]["walltime"] == "00:10:00"
    status = JobHandle.from_id(job_id).wait(timeout_s=JOB_TIMEOUT_S, poll_max_s=POLL_MAX_S)
    assert status.state == "COMPLETED" and status.succeeded and status.run_dir.as_posix() == run_dir
    assert hpcnn_json("status")[0]["job_id"] == job_id  # no argument: recent submissions


def test_failed_job_reports_its_reason(slurm_cluster, tmp_path, state_dir):
    broken = tmp_path / "broken-images"  # enough image files for pre-flight (which counts names), none decodes:
    for name in ("a", "b"):               # the job itself fails
        (broken / name).mkdir(parents=True)
        for i in range(60):
            (broken / name / f"{i}.png").write_bytes(b"not a png")
    handle = hpcnn.submit(None, "local", overrides=tiny(tmp_path, "data.source=folder", f"data.root={broken}"))
    status = handle.wait(timeout_s=JOB_TIMEOUT_S, poll_max_s=POLL_MAX_S)
    assert status.state == "FAILED" and not status.succeeded
    assert status.reason.startswith("FAILED") and "DatasetError: class folder" in status.reason
    assert len(status.reason.splitlines()) == 1
    with pytest.raises(SubmissionError, match=f"job {handle.job_id} did not complete"):
        handle.result(timeout_s=30)
    assert "FAILED" in run_cli("status", handle.job_id).stdout


def test_cancel_from_a_new_process(slurm_cluster, tmp_path, state_dir):
    handle = hpcnn.submit(None, "local", overrides=tiny(tmp_path, "train.epochs=500"))
    wait_until(lambda: (handle.run_dir / "checkpoints").is_dir(), JOB_TIMEOUT_S, "training to start")
    assert run_cli("cancel", handle.job_id).stdout.strip() == f"cancelled {handle.job_id}"
    status = handle.wait(timeout_s=60, poll_max_s=POLL_MAX_S)
    assert status.state == "CANCELLED" and "CANCELLED" in status.reason
    # scancel's SIGTERM makes the trainer checkpoint as for a preemption: the job must not requeue itself.
    wait_until(lambda: steps_finished(slurm_cluster, handle.job_id), 60, "the cancelled job's processes to end")
    assert [r["State"] for r in sacct_rows(slurm_cluster, handle.job_id, duplicates=True)] == ["CANCELLED"]
    queued = slurm_cluster.run(["squeue", "-h", "-j", handle.job_id, "-o", "%T"], check=False).stdout.split()
    assert set(queued) <= {"COMPLETING"}, queued


def test_preflight_refuses_before_sbatch(slurm_cluster, tmp_path, state_dir):
    probe = tiny(tmp_path, "name=preflight-probe")
    proc = run_cli("submit", *probe, "--profile", "local", "--gpus-per-node", "3", check=False)
    assert proc.returncode == 2 and "exceeds the 2 GPUs a node has" in proc.stderr
    proc = run_cli("submit", *probe, "data.source=folder", "data.root=/nonexistent/data", "--profile", "local",
                   check=False)
    assert proc.returncode == 2 and "data.root does not exist" in proc.stderr
    assert slurm_cluster.run(["squeue", "-h", "-n", "hpcnn-preflight-probe"]).stdout.strip() == ""
    assert not any((tmp_path / "runs").glob("preflight-probe-*")), "no run directory for a refused job"
