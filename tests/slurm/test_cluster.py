"""The local Slurm cluster behaves like the real clusters hpcnn targets: nodes, GPUs, accounting, signals, DDP."""
from __future__ import annotations

import sys
import time
from pathlib import Path

import pytest

from tests.slurm.conftest import CLUSTER_SH

NODES = ["n1", "n2", "n3"]

ALLREDUCE = r"""
import datetime, os, socket, subprocess
import torch, torch.distributed as dist
hosts = subprocess.run(["scontrol", "show", "hostnames", os.environ["SLURM_JOB_NODELIST"]],
                       capture_output=True, text=True, timeout=30, check=True).stdout.split()
os.environ["MASTER_ADDR"] = hosts[0]
os.environ["MASTER_PORT"] = str(29500 + int(os.environ["SLURM_JOB_ID"]) % 1000)
rank, world = int(os.environ["SLURM_PROCID"]), int(os.environ["SLURM_NTASKS"])
dist.init_process_group("gloo", rank=rank, world_size=world, timeout=datetime.timedelta(seconds=60))
t = torch.tensor([rank + 1.0])
dist.all_reduce(t)
print(f"rank={rank} world={world} host={socket.gethostname()} sum={t.item()}", flush=True)
dist.destroy_process_group()
"""


def wait_for(predicate, timeout: float, what: str, interval: float = 0.2):
    """Poll until predicate() is truthy (and return it), bounded by wall-clock time."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(interval)


def batch_script(path: Path, body: str) -> Path:
    """A bash batch script (sbatch --wrap would run under /bin/sh)."""
    path.write_text("#!/bin/bash\nset -eu\n" + body)
    return path


def sbatch(cluster, *args) -> str:
    return cluster.run(["sbatch", "--parsable", *args], timeout=30).stdout.strip().split(";")[0]


def accounted_state(cluster, job_id: str) -> str:
    out = cluster.run(["sacct", "-n", "-X", "-P", "-j", job_id, "-o", "State,ExitCode"], timeout=30).stdout
    return out.strip()


def test_cluster_sh_env_prints_the_conf_export(slurm_cluster):
    out = slurm_cluster.run(["bash", CLUSTER_SH, "env"], timeout=10).stdout.strip()
    assert out == f"export SLURM_CONF={slurm_cluster.conf}"


def test_status_reports_three_nodes_with_cpus_and_gpus(slurm_cluster):
    proc = slurm_cluster.run(["bash", CLUSTER_SH, "status"], timeout=30)
    sinfo = slurm_cluster.run(["sinfo", "-h", "-N", "-o", "%N %c %G %P"], timeout=15).stdout.split("\n")
    assert sorted(line for line in sinfo if line) == [f"{n} 4 gpu:2 debug*" for n in NODES]
    assert "slurmctld: running" in proc.stdout


def test_srun_on_three_nodes_runs_on_each_node_with_its_own_hostname(slurm_cluster):
    out = slurm_cluster.run(["srun", "-N3", "--immediate=45", "hostname"], timeout=60).stdout.split()
    assert sorted(out) == NODES


def test_gpu_job_gets_one_visible_fake_gpu(slurm_cluster):
    out = slurm_cluster.run(["srun", "-N1", "--gres=gpu:1", "--immediate=45", "printenv", "CUDA_VISIBLE_DEVICES"],
                            timeout=60).stdout.strip()
    assert out in {"0", "1"}


def test_sacct_sees_finished_jobs_with_state_and_exit_code(slurm_cluster):
    ok = sbatch(slurm_cluster, "-J", "hpcnn-ok", "--wrap", "true")
    failed = sbatch(slurm_cluster, "-J", "hpcnn-fail", "--wrap", "exit 3")

    def final(job_id):  # records reach slurmdbd asynchronously: poll until the job is seen finished
        state = accounted_state(slurm_cluster, job_id)
        return state if state.split("|")[0] in {"COMPLETED", "FAILED", "CANCELLED", "TIMEOUT"} else None

    assert wait_for(lambda: final(ok), 30, f"sacct to see job {ok} finish") == "COMPLETED|0:0"
    assert wait_for(lambda: final(failed), 30, f"sacct to see job {failed} finish") == "FAILED|3:0"


def test_usr2_sent_with_scancel_reaches_the_batch_shell(slurm_cluster, tmp_path):
    script = batch_script(tmp_path / "trap.sh", f"""
trap 'echo got-usr2 > {tmp_path}/signalled; exit 0' USR2
touch {tmp_path}/ready
for i in $(seq 1 600); do sleep 0.1; done
""")
    job = sbatch(slurm_cluster, "-o", tmp_path / "out.txt", script)
    try:
        wait_for(lambda: (tmp_path / "ready").exists(), 30, "the batch job to start")
        slurm_cluster.run(["scancel", "--signal=USR2", "--batch", job], timeout=15)
        wait_for(lambda: (tmp_path / "signalled").exists(), 15, "the USR2 trap to fire")
    finally:
        slurm_cluster.run(["scancel", job], timeout=15, check=False)
    assert (tmp_path / "signalled").read_text().strip() == "got-usr2"


@pytest.mark.slow
def test_requeued_job_runs_again_with_restart_count(slurm_cluster, tmp_path):
    """submitit's preemption path uses `scontrol requeue`; cred_expire=10 makes the restart come in ~25 s."""
    script = batch_script(tmp_path / "requeue.sh", f"""
touch {tmp_path}/start-${{SLURM_RESTART_COUNT:-0}}
for i in $(seq 1 1200); do sleep 0.1; done
""")
    job = sbatch(slurm_cluster, "-o", tmp_path / "out.txt", script)
    try:
        wait_for(lambda: (tmp_path / "start-0").exists(), 30, "the first run")
        slurm_cluster.run(["scontrol", "requeue", job], timeout=15)
        wait_for(lambda: (tmp_path / "start-1").exists(), 90, "the requeued run")
    finally:
        slurm_cluster.run(["scancel", job], timeout=15, check=False)


def test_gloo_all_reduce_across_two_nodes(slurm_cluster):
    proc = slurm_cluster.run(["srun", "-N2", "--ntasks-per-node=1", "--immediate=45", sys.executable, "-c", ALLREDUCE],
                             timeout=180)
    lines = sorted(line for line in proc.stdout.splitlines() if line.startswith("rank="))
    assert len(lines) == 2, proc.stdout + proc.stderr
    fields = [dict(kv.split("=") for kv in line.split()) for line in lines]
    assert [f["rank"] for f in fields] == ["0", "1"]
    assert all(f["world"] == "2" and float(f["sum"]) == 3.0 for f in fields)
    assert fields[0]["host"] != fields[1]["host"] and {f["host"] for f in fields} <= set(NODES)
