"""World detection: one environment per launcher (as in Lightning's tests), hostlists, bad launches."""
from __future__ import annotations

import subprocess
import sys

import pytest

from hpcnn.env import detect_world, slurm_port
from hpcnn.env import hostlist
from hpcnn.errors import WorldError

SLURM_STEP = {"SLURM_JOB_ID": "4242", "SLURM_STEP_ID": "0", "SLURM_PROCID": "5", "SLURM_LOCALID": "1",
              "SLURM_NTASKS": "8", "SLURM_NODEID": "2", "SLURM_JOB_NODELIST": "gpu[001-004]",
              "SLURM_STEP_NODELIST": "gpu[001-004]", "SLURM_STEP_TASKS_PER_NODE": "2(x4)", "SLURM_JOB_NAME": "x"}


@pytest.mark.parametrize("env,expect", [
    ({}, dict(rank=0, world_size=1, launcher="single")),
    ({"RANK": "3", "WORLD_SIZE": "4", "LOCAL_RANK": "1", "LOCAL_WORLD_SIZE": "2", "GROUP_RANK": "1",
      "MASTER_ADDR": "h1", "MASTER_PORT": "1234", "TORCHELASTIC_RUN_ID": "r"},
     dict(rank=3, world_size=4, local_rank=1, node_rank=1, num_nodes=2, master_addr="h1", master_port=1234,
          launcher="torchrun")),
    # torchrun inside a Slurm allocation: torchrun wins
    ({**SLURM_STEP, "RANK": "1", "WORLD_SIZE": "2", "LOCAL_RANK": "1", "MASTER_ADDR": "a", "MASTER_PORT": "9"},
     dict(rank=1, world_size=2, launcher="torchrun")),
    (SLURM_STEP, dict(rank=5, local_rank=1, world_size=8, local_world_size=2, node_rank=2, num_nodes=4,
                      master_addr="gpu001", master_port=slurm_port("4242"), launcher="slurm", job_id="4242")),
    ({**SLURM_STEP, "SUBMITIT_EXECUTOR": "slurm"}, dict(rank=5, launcher="submitit")),
    ({**SLURM_STEP, "MASTER_PORT": "23456"}, dict(master_port=23456)),
    ({"SUBMITIT_LOCAL_GLOBALID": "1", "SUBMITIT_LOCAL_LOCALID": "1", "SUBMITIT_LOCAL_NTASKS": "2",
      "SUBMITIT_LOCAL_JOB_ID": "777"}, dict(rank=1, world_size=2, launcher="submitit", master_addr="127.0.0.1")),
    ({"HOROVOD_RANK": "2", "HOROVOD_SIZE": "4", "HOROVOD_LOCAL_RANK": "0", "HOROVOD_LOCAL_SIZE": "2",
      "HOROVOD_CROSS_RANK": "1", "HOROVOD_CROSS_SIZE": "2"},
     dict(rank=2, world_size=4, local_rank=0, node_rank=1, num_nodes=2, launcher="horovod")),
    ({"OMPI_COMM_WORLD_RANK": "1", "OMPI_COMM_WORLD_SIZE": "2", "OMPI_COMM_WORLD_LOCAL_RANK": "1",
      "OMPI_COMM_WORLD_LOCAL_SIZE": "2", "MASTER_ADDR": "m"}, dict(rank=1, world_size=2, launcher="mpi")),
    # an interactive allocation (salloc; bash) is a single process, not an error
    ({"SLURM_JOB_ID": "1", "SLURM_PROCID": "0", "SLURM_NTASKS": "4", "SLURM_JOB_NAME": "interactive",
      "SLURM_JOB_NODELIST": "n1"}, dict(world_size=1, launcher="single")),
    ({"HPCNN_SINGLE_PROCESS": "1", **SLURM_STEP}, dict(world_size=1, launcher="single")),
], ids=["none", "torchrun", "torchrun-in-slurm", "srun", "submitit", "explicit-port", "submitit-local",
        "horovod", "openmpi", "salloc-shell", "forced-single"])
def test_detect(env, expect):
    world = detect_world(env)
    for key, value in expect.items():
        assert getattr(world, key) == value, key


def test_batch_script_without_srun_is_an_error():
    env = {"SLURM_JOB_ID": "9", "SLURM_PROCID": "0", "SLURM_NTASKS": "4", "SLURM_JOB_NAME": "train",
           "SLURM_JOB_NODELIST": "n[1-2]"}
    with pytest.raises(WorldError, match="4 tasks but python was started without srun.*srun python -m hpcnn"):
        detect_world(env)


@pytest.mark.parametrize("env,needle", [
    ({"RANK": "4", "WORLD_SIZE": "4", "LOCAL_RANK": "0"}, "rank 4 is outside world size 4"),
    ({"RANK": "x", "WORLD_SIZE": "4", "LOCAL_RANK": "0"}, "RANK='x' is not an integer"),
    ({"OMPI_COMM_WORLD_RANK": "0", "OMPI_COMM_WORLD_SIZE": "2"}, "no master address is known"),
])
def test_inconsistent_launches(env, needle):
    with pytest.raises(WorldError, match=needle):
        detect_world(env)


@pytest.mark.parametrize("text,hosts", [
    ("n1", ["n1"]),
    ("gpu[001-004,007]", ["gpu001", "gpu002", "gpu003", "gpu004", "gpu007"]),
    ("n[1-3],login1", ["n1", "n2", "n3", "login1"]),
    ("a[1-2]-b[3-4]", ["a1-b3", "a1-b4", "a2-b3", "a2-b4"]),
    ("tux-[8-10]", ["tux-8", "tux-9", "tux-10"]),
    ("x[09-11]", ["x09", "x10", "x11"]),
])
def test_hostlist_expand(text, hosts):
    assert hostlist.expand(text) == hosts
    assert hostlist.first(text) == hosts[0]


def test_hostlist_errors_and_tasks_per_node():
    for bad in ("n[1-", "n[3-1]", "n[a]"):
        with pytest.raises(WorldError):
            hostlist.expand(bad)
    assert hostlist.tasks_per_node("2(x3),1") == [2, 2, 2, 1]
    assert hostlist.tasks_per_node("4") == [4]


def test_env_module_imports_without_torch():
    code = "import sys; sys.modules['torch'] = None; import hpcnn.env; print(hpcnn.env.detect_world({}).world_size)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and out.stdout.strip() == "1", out.stderr
