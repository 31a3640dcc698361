"""The training code under srun on the local multi-node Slurm: 2 nodes x 1 task, and a bad launch."""
from __future__ import annotations

import json

from tests.helpers import PYTHON, REPO, TINY


def test_two_node_srun_job_trains_to_completion(slurm_cluster, tmp_path):
    run_dir = tmp_path / "run"
    proc = slurm_cluster.run(
        ["timeout", "300", "srun", "--immediate=60", "--nodes=2", "--ntasks-per-node=1", "--kill-on-bad-exit=1",
         f"--chdir={REPO}", PYTHON, "-m", "hpcnn", "train", *TINY, f"--run-dir={run_dir}"], timeout=320, check=False)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["world_size"] == 2 and summary["status"] == "completed"
    assert "via slurm" in proc.stdout and "rank 0/2" in proc.stdout
    # rank 1 stays quiet: one set of epoch lines, printed by rank 0
    assert proc.stdout.count("epoch 1/2 train loss") == 1


def test_batch_script_without_srun_is_reported_in_one_line(slurm_cluster, tmp_path):
    script = tmp_path / "job.sh"
    out = tmp_path / "out.txt"
    script.write_text(f"#!/bin/bash\ncd {REPO}\n{PYTHON} -m hpcnn train {' '.join(TINY)}\n")
    proc = slurm_cluster.run(["timeout", "180", "sbatch", "--wait", "--ntasks=2", f"--output={out}", str(script)],
                             timeout=200, check=False)
    assert proc.returncode != 0
    text = out.read_text()
    assert "has 2 tasks but python was started without srun" in text and "Traceback" not in text
