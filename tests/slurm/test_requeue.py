"""Preemption on the real local Slurm: signal mid-run -> checkpoint -> requeue -> resume -> same weights.

Four jobs run side by side (one submission round, shared wall time): an uninterrupted reference, a
submitit job signalled mid-run, one signalled with no requeues left, and a hand-rendered sbatch script
signalled mid-run. The signal is the profile's (USR2), delivered with `scancel --signal=USR2 JOBID`
(to the job steps, as Slurm's --signal=USR2@lead does), as soon as the first checkpoint exists.
"""
from __future__ import annotations

import pytest
import torch

import hpcnn
from hpcnn.slurm.site import commands

from tests.slurm.support import JOB_TIMEOUT_S, POLL_MAX_S, sacct_rows, tiny, wait_until

EPOCHS = 30  # long enough that the signal lands mid-run even on a busy machine, seconds in all


def tensors(run_dir):
    return torch.load(run_dir / "checkpoints" / "model_final.pt", weights_only=True)["model"]


def first_checkpoint(run_dir):
    return wait_until(lambda: sorted((run_dir / "checkpoints").glob("ckpt-*.pt")), JOB_TIMEOUT_S,
                      f"a first checkpoint in {run_dir}", poll_s=0.2)


@pytest.fixture(scope="module")
def jobs(slurm_cluster, tmp_path_factory):
    root = tmp_path_factory.mktemp("requeue")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("HPCNN_STATE_DIR", str(root / "state"))
        common = tiny(root, f"train.epochs={EPOCHS}", "train.log_every=2")
        reference = hpcnn.submit(None, "local", overrides=common + ["name=reference"])
        requeued = hpcnn.submit(None, "local", overrides=common + ["name=requeued", "slurm.max_requeues=2"])
        no_requeue = hpcnn.submit(None, "local", overrides=common + ["name=norequeue", "slurm.max_requeues=0"])
        script = root / "hand.sbatch"
        script.write_text(hpcnn.render(None, "local", overrides=common + ["name=hand", "slurm.max_requeues=1"]))
        hand_id = commands.sbatch(script)
        hand_dir = root / "runs" / f"hand-{hand_id}"
        for job_id, run_dir in ((requeued.job_id, requeued.run_dir), (no_requeue.job_id, no_requeue.run_dir),
                                (hand_id, hand_dir)):
            first_checkpoint(run_dir)
            commands.scancel([job_id], signal="USR2")
        yield {"reference": reference, "requeued": requeued, "no_requeue": no_requeue, "hand_id": hand_id,
               "hand_dir": hand_dir, "cluster": slurm_cluster, "common": common}


def test_requeues_are_bounded(jobs):
    job = jobs["no_requeue"]
    status = job.wait(timeout_s=3 * JOB_TIMEOUT_S, poll_max_s=POLL_MAX_S)
    assert not status.succeeded and status.summary["status"] == "preempted"
    assert "preempted" in status.reason
    assert [r["State"] for r in sacct_rows(jobs["cluster"], job.job_id, duplicates=True)] == ["COMPLETED"]
    assert "slurm.max_requeues=0 is used up" in job.logs(tail=0)


def test_resubmitting_the_run_directory_continues_to_the_same_weights(jobs):
    stopped = jobs["no_requeue"]
    stopped.wait(timeout_s=3 * JOB_TIMEOUT_S, poll_max_s=POLL_MAX_S)
    again = hpcnn.submit(None, "local", overrides=jobs["common"] + ["name=norequeue"], run_dir=stopped.run_dir)
    assert again.run_dir == stopped.run_dir and again.record["previous_jobs"] == [stopped.job_id]
    status = again.wait(timeout_s=3 * JOB_TIMEOUT_S, poll_max_s=POLL_MAX_S)
    assert status.succeeded, status.reason
    ref = jobs["reference"].wait(timeout_s=3 * JOB_TIMEOUT_S, poll_max_s=POLL_MAX_S)
    final, expected = tensors(again.run_dir), tensors(ref.run_dir)
    assert all(torch.equal(final[k], expected[k]) for k in expected)


def test_signalled_job_checkpoints_requeues_resumes_and_matches_the_uninterrupted_run(jobs):
    ref = jobs["reference"].wait(timeout_s=3 * JOB_TIMEOUT_S, poll_max_s=POLL_MAX_S)
    job = jobs["requeued"]
    status = job.wait(timeout_s=3 * JOB_TIMEOUT_S, poll_max_s=POLL_MAX_S)
    assert ref.succeeded and status.succeeded, (ref.reason, status.reason)
    runs = sacct_rows(jobs["cluster"], job.job_id, duplicates=True)
    assert [r["State"] for r in runs] == ["REQUEUED", "COMPLETED"], runs  # one requeue, then done
    log = job.logs(tail=0)
    assert "received SIGUSR2" in log and "requeued job" in log and "resuming from" in log
    assert status.summary["epochs_run"] <= EPOCHS  # history counts the resumed run's epochs too
    final, expected = tensors(job.run_dir), tensors(ref.run_dir)
    assert final.keys() == expected.keys()
    different = [k for k in final if not torch.equal(final[k], expected[k])]
    assert not different, f"resumed run differs from the uninterrupted one in {different}"


def test_hand_rendered_script_requeues_itself_and_resumes(jobs):
    cluster, job_id, run_dir = jobs["cluster"], jobs["hand_id"], jobs["hand_dir"]
    ref = jobs["reference"].wait(timeout_s=3 * JOB_TIMEOUT_S, poll_max_s=POLL_MAX_S)

    def finished():
        rows = sacct_rows(cluster, job_id, duplicates=True)
        return rows if rows and rows[-1]["State"] in ("COMPLETED", "FAILED", "CANCELLED") else None

    rows = wait_until(finished, 3 * JOB_TIMEOUT_S, f"hand job {job_id}", poll_s=1.0)
    assert [r["State"] for r in rows] == ["REQUEUED", "COMPLETED"], rows
    summary = hpcnn.slurm.JobHandle.from_run_dir(run_dir).status().summary
    assert summary["status"] == "completed"
    final, expected = tensors(run_dir), tensors(ref.run_dir)
    assert all(torch.equal(final[k], expected[k]) for k in expected)
