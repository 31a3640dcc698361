"""`hpcnn top` against a real running 2-node job on the local Slurm, GPUs read through the stand-in NVML.

The job trains (tests/support/train_until_released.py) and holds at global step 10 until the test
creates a file; `hpcnn top` samples both nodes' GPUs through `srun --jobid --overlap`, shows the
job's step from its progress file, and exits by itself once the job has ended.
"""
from __future__ import annotations

import os
import shlex
import subprocess

from hpcnn.monitor.series import read_progress
from hpcnn.slurm.jobs.records import register
from tests.helpers import PYTHON, REPO, TINY
from tests.slurm.support import (JOB_TIMEOUT_S, hpcnn, read_summary, state_dir,  # noqa: F401 (a fixture)
                                 wait_finished, wait_until)

HOLD_STEP = 10


def test_top_shows_both_nodes_gpus_at_the_jobs_step_and_ends_with_the_job(slurm_cluster, tmp_path, state_dir,
                                                                           monkeypatch):
    monkeypatch.setenv("HPCNN_NVML_MODULE", "tests.support.fake_pynvml")
    run_dir, release = tmp_path / "run", tmp_path / "release"
    train = [PYTHON, "-m", "tests.support.train_until_released", run_dir, release, HOLD_STEP, *TINY,
             "train.device=cpu", "monitor.interval_s=0.2", f"train.runs_dir={tmp_path}"]
    script = tmp_path / "job.sh"
    script.write_text(f"#!/bin/bash\n#SBATCH --nodes=2 --ntasks-per-node=1 --gres=gpu:1 --time=8\n"
                      f"cd {shlex.quote(str(REPO))}\nexport HPCNN_NVML_MODULE=tests.support.fake_pynvml\n"
                      f"srun --kill-on-bad-exit=1 {' '.join(shlex.quote(str(a)) for a in train)}\n")
    job = slurm_cluster.run(["sbatch", "--parsable", f"--output={tmp_path}/out.txt", str(script)],
                            timeout=30).stdout.strip()
    register(job, run_dir)  # what `hpcnn submit` does; `top` finds the run directory through it
    try:
        at = wait_until(lambda: (read_progress(run_dir) or {}).get("step") == HOLD_STEP, JOB_TIMEOUT_S,
                        f"job {job} to reach step {HOLD_STEP}")
        assert at

        nodes = job_nodes(slurm_cluster, job)  # whichever two nodes Slurm chose (other jobs may hold one)
        snap = hpcnn("top", job, "--once", timeout=120).stdout.splitlines()
        assert snap[0].startswith(f"job {job} RUNNING on n[") and f"job at: train e1 step {HOLD_STEP}" in snap[0]
        assert snap[1].split()[:3] == ["NODE", "GPU", "UTIL"]
        table = [line.split() for line in snap[2:]]
        assert [(t[0], t[1]) for t in table] == [(n, "0") for n in nodes]  # each node's one allocated GPU
        assert all(t[2] == "87%" and line.endswith(f"step {HOLD_STEP}") for t, line in zip(table, snap[2:]))

        # a live `top` (piped, so --watch) keeps refreshing until the job ends, then exits 0 by itself
        log = tmp_path / "top.txt"
        with open(log, "w") as out:
            top = subprocess.Popen([PYTHON, "-m", "hpcnn", "top", job, "--watch", "--interval", "0.5"], cwd=REPO,
                                   stdout=out, stderr=subprocess.STDOUT, text=True, env=dict(os.environ))
        try:
            wait_until(lambda: f"step {HOLD_STEP}" in log.read_text(), 120, "a first live frame")
            release.touch()
            assert top.wait(timeout=JOB_TIMEOUT_S) == 0, log.read_text()
        finally:
            if top.poll() is None:
                top.kill()
                top.wait(timeout=30)
        text = log.read_text()
        assert text.rstrip().endswith(f"job {job} has ended (COMPLETED)"), text[-2000:]
        assert "Traceback" not in text
    finally:
        release.touch()
        row = wait_finished(slurm_cluster, job)
    assert row["State"] == "COMPLETED", (tmp_path / "out.txt").read_text()[-3000:]
    gpu = read_summary(run_dir)["gpu"]  # the job's own samplers: both nodes' series gathered by rank 0
    assert gpu["nodes"] == 2 and gpu["gpus"] == 2 and {g["host"] for g in gpu["per_gpu"]} == set(nodes)


def job_nodes(cluster, job: str) -> list[str]:
    """The nodes a running job holds, expanded (n[2-3] -> n2, n3)."""
    nodelist = cluster.run(["squeue", "-h", "-j", job, "-o", "%N"], timeout=30).stdout.strip()
    return cluster.run(["scontrol", "show", "hostnames", nodelist], timeout=30).stdout.split()
