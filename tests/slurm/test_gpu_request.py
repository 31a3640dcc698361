"""A job given GPUs that torch cannot use stops at start-up instead of training on the CPU (issue 20, item 1).

The local cluster's GPUs are fake (gres over plain files): Slurm sets CUDA_VISIBLE_DEVICES as on a
real site, and torch here finds no driver, which is exactly a site's missing CUDA module. The job
is submitted with the CLI, whose output names the profile, why it was used, and the cost.
"""
from __future__ import annotations

import re

from hpcnn.slurm import JobHandle

from tests.slurm.support import JOB_TIMEOUT_S, POLL_MAX_S, hpcnn, state_dir, tiny

__all__ = ["state_dir"]


def test_a_gpu_job_whose_torch_cannot_use_the_gpu_fails_with_one_line(slurm_cluster, tmp_path, state_dir):
    out = hpcnn("submit", *tiny(tmp_path, "name=idle-gpu"), "--gpus-per-node", "1", "--time", "00:30:00").stdout
    job_id = re.search(r"^submitted job (\S+) ", out, re.M).group(1)
    assert re.search(r"^profile local \(.*local\.yaml\), chosen by \$HPCNN_PROFILE$", out, re.M), out
    assert "cost: at most 0.5 GPU-hours, 0.5 node-hours (walltime x resources x tasks)" in out

    handle = JobHandle.from_id(job_id)
    status = handle.wait(timeout_s=JOB_TIMEOUT_S, poll_max_s=POLL_MAX_S)
    assert status.state == "FAILED" and len(status.reason.splitlines()) == 1
    assert "WorldError: the job was given GPUs but torch" in status.reason
    assert "cannot use the GPUs" in status.reason or "CPU-only build" in status.reason
    assert "train.device: cpu" in status.reason
    assert not (handle.run_dir / "checkpoints").exists() and not (handle.run_dir / "summary.json").exists()
