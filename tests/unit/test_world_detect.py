"""detect_world(): one environment per launcher (as in Lightning's tests), then the launches it must refuse.

The Slurm environments are trimmed copies of what Slurm 22.05 really set on the local cluster
(`sbatch --nodes=2 --ntasks=3`, its `srun` step, an array task's `srun -n1` sub-step, `salloc -n 2`).
Every test passes `environ=` explicitly: nothing here touches os.environ, except the one test of
the default, which uses monkeypatch.
"""
from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
from types import MappingProxyType

import pytest

from hpcnn.env import DETECTORS, World, derive_port, detect_world, validate_against_request
from hpcnn.env.gpus import TorchCuda, check_gpus_usable, held_gpus
from hpcnn.errors import WorldError

HOST = "testhost"

# `sbatch --nodes=2 --ntasks=3 job.sh`: the batch script's own environment (no step variables).
SLURM_BATCH = {
    "SLURM_JOB_ID": "44", "SLURM_JOBID": "44", "SLURM_JOB_NAME": "job.sh", "SLURM_JOB_NODELIST": "n[1-2]",
    "SLURM_NODELIST": "n[1-2]", "SLURM_JOB_NUM_NODES": "2", "SLURM_NNODES": "2", "SLURM_NTASKS": "3",
    "SLURM_NPROCS": "3", "SLURM_TASKS_PER_NODE": "2,1", "SLURM_JOB_CPUS_PER_NODE": "2,1", "SLURM_PROCID": "0",
    "SLURM_LOCALID": "0", "SLURM_NODEID": "0", "SLURM_GTIDS": "0", "SLURM_SUBMIT_HOST": "vm",
}
# ... and task 2 of its `srun` step (block distribution: n1 runs ranks 0,1 and n2 runs rank 2).
SLURM_STEP_RANK2 = {
    **SLURM_BATCH, "SLURM_STEP_ID": "0", "SLURM_STEPID": "0", "SLURM_STEP_NODELIST": "n[1-2]",
    "SLURM_STEP_NUM_NODES": "2", "SLURM_STEP_NUM_TASKS": "3", "SLURM_STEP_TASKS_PER_NODE": "2,1",
    "SLURM_PROCID": "2", "SLURM_LOCALID": "0", "SLURM_NODEID": "1", "SLURM_GTIDS": "2",
}
# `srun --ntasks-per-node=4 python ...` on one node, rank 3.
SRUN_ONE_NODE = {
    "SLURM_JOB_ID": "1234", "SLURM_JOB_NAME": "train", "SLURM_JOB_NODELIST": "gpu007", "SLURM_JOB_NUM_NODES": "1",
    "SLURM_NTASKS": "4", "SLURM_NTASKS_PER_NODE": "4", "SLURM_TASKS_PER_NODE": "4", "SLURM_STEP_ID": "0",
    "SLURM_STEP_NODELIST": "gpu007", "SLURM_STEP_NUM_NODES": "1", "SLURM_STEP_NUM_TASKS": "4",
    "SLURM_STEP_TASKS_PER_NODE": "4", "SLURM_PROCID": "3", "SLURM_LOCALID": "3", "SLURM_NODEID": "0",
}
# Array task 0 of array job 47 (its own job id 48), `srun -n1` inside a 2 nodes x 2 tasks allocation:
# the job-level variables still say 4 tasks and 2 per node; the step's say 1.
SLURM_ARRAY_SUBSTEP = {
    "SLURM_ARRAY_JOB_ID": "47", "SLURM_ARRAY_TASK_ID": "0", "SLURM_ARRAY_TASK_COUNT": "2", "SLURM_JOB_ID": "48",
    "SLURM_JOBID": "48", "SLURM_JOB_NAME": "b2.sh", "SLURM_JOB_NODELIST": "n[1-2]", "SLURM_JOB_NUM_NODES": "2",
    "SLURM_NNODES": "1", "SLURM_NTASKS": "1", "SLURM_NTASKS_PER_NODE": "2", "SLURM_TASKS_PER_NODE": "1",
    "SLURM_STEP_ID": "0", "SLURM_STEPID": "0", "SLURM_STEP_NODELIST": "n1", "SLURM_STEP_NUM_NODES": "1",
    "SLURM_STEP_NUM_TASKS": "1", "SLURM_STEP_TASKS_PER_NODE": "1", "SLURM_PROCID": "0", "SLURM_LOCALID": "0",
    "SLURM_NODEID": "0",
}
# `salloc -n 2`: the shell inside the allocation (no SLURM_PROCID, no step).
SALLOC_SHELL = {
    "SLURM_JOB_ID": "49", "SLURM_JOB_NAME": "interactive", "SLURM_JOB_NODELIST": "n1", "SLURM_JOB_NUM_NODES": "1",
    "SLURM_NNODES": "1", "SLURM_NTASKS": "2", "SLURM_NPROCS": "2", "SLURM_TASKS_PER_NODE": "2",
}
# `torchrun --nnodes=2 --nproc_per_node=2` on node 1, local rank 1.
TORCHRUN = {
    "RANK": "3", "LOCAL_RANK": "1", "WORLD_SIZE": "4", "LOCAL_WORLD_SIZE": "2", "GROUP_RANK": "1",
    "GROUP_WORLD_SIZE": "2", "ROLE_RANK": "3", "ROLE_WORLD_SIZE": "4", "ROLE_NAME": "default",
    "MASTER_ADDR": "node-a", "MASTER_PORT": "29400", "TORCHELASTIC_RUN_ID": "run7",
    "TORCHELASTIC_RESTART_COUNT": "0", "TORCHELASTIC_MAX_RESTARTS": "0", "TORCHELASTIC_USE_AGENT_STORE": "False",
}
# `srun --nodes=2 --ntasks-per-node=1 torchrun --nproc_per_node=2 ...`: both sets of variables.
SRUN_ONE_TASK_PER_NODE = {
    "SLURM_JOB_ID": "555", "SLURM_JOB_NAME": "ddp", "SLURM_JOB_NODELIST": "n[1-2]", "SLURM_JOB_NUM_NODES": "2",
    "SLURM_NTASKS": "2", "SLURM_STEP_ID": "0", "SLURM_STEP_NODELIST": "n[1-2]", "SLURM_STEP_NUM_NODES": "2",
    "SLURM_STEP_NUM_TASKS": "2", "SLURM_STEP_TASKS_PER_NODE": "1(x2)", "SLURM_PROCID": "1", "SLURM_LOCALID": "0",
    "SLURM_NODEID": "1",
}
# submitit's LocalExecutor(tasks_per_node=2), task 1 (variables from submitit/local/local.py).
SUBMITIT_LOCAL = {
    "SUBMITIT_EXECUTOR": "local", "SUBMITIT_LOCAL_NTASKS": "2", "SUBMITIT_LOCAL_NODEID": "0",
    "SUBMITIT_LOCAL_JOB_NUM_NODES": "1", "SUBMITIT_LOCAL_LOCALID": "1", "SUBMITIT_LOCAL_GLOBALID": "1",
    "SUBMITIT_LOCAL_JOB_ID": "31337", "SUBMITIT_LOCAL_COMMAND": "python -u -m submitit.core._submit /tmp/x",
    "SUBMITIT_LOCAL_TIMEOUT_S": "60", "SUBMITIT_LOCAL_SIGNAL_DELAY_S": "30", "SUBMITIT_FOLDER": "/tmp/x",
}
# `horovodrun --gloo -np 4 -H a:2,b:2`, rank 2 (variables from horovod/runner/gloo_run.py).
HOROVOD_GLOO = {
    "HOROVOD_HOSTNAME": "b", "HOROVOD_RANK": "2", "HOROVOD_SIZE": "4", "HOROVOD_LOCAL_RANK": "0",
    "HOROVOD_LOCAL_SIZE": "2", "HOROVOD_CROSS_RANK": "1", "HOROVOD_CROSS_SIZE": "2",
    "HOROVOD_GLOO_RENDEZVOUS_ADDR": "10.0.0.1", "HOROVOD_GLOO_RENDEZVOUS_PORT": "40123",
    "HOROVOD_CONTROLLER": "gloo", "HOROVOD_CPU_OPERATIONS": "gloo", "HOROVOD_GLOO_IFACE": "eth0",
}
# `mpirun -np 4` inside the batch script of a 2-node job; rank 3 runs on n2 under mpirun's daemon,
# which Slurm started as step 1 with one task per remote node: SLURM_PROCID=0 there is *not* the rank.
OPENMPI_IN_SLURM = {
    **SLURM_BATCH, "SLURM_NTASKS": "4", "SLURM_TASKS_PER_NODE": "2(x2)",
    "SLURM_STEP_ID": "1", "SLURM_STEPID": "1", "SLURM_STEP_NODELIST": "n2", "SLURM_STEP_NUM_NODES": "1",
    "SLURM_STEP_NUM_TASKS": "1", "SLURM_STEP_TASKS_PER_NODE": "1", "SLURM_PROCID": "0", "SLURM_NODEID": "0",
    "OMPI_COMM_WORLD_RANK": "3", "OMPI_COMM_WORLD_SIZE": "4", "OMPI_COMM_WORLD_LOCAL_RANK": "1",
    "OMPI_COMM_WORLD_LOCAL_SIZE": "2", "OMPI_COMM_WORLD_NODE_RANK": "1",
}
OPENMPI_ONE_NODE = {"OMPI_COMM_WORLD_RANK": "1", "OMPI_COMM_WORLD_SIZE": "2", "OMPI_COMM_WORLD_LOCAL_RANK": "1",
                    "OMPI_COMM_WORLD_LOCAL_SIZE": "2", "PMIX_NAMESPACE": "prterun-vm-4242@1"}
MPICH_HYDRA = {"PMI_RANK": "5", "PMI_SIZE": "8", "MPI_LOCALRANKID": "1", "MPI_LOCALNRANKS": "4",
               "MASTER_ADDR": "head", "MASTER_PORT": "23456"}

LAUNCHES = {
    "plain python": ({}, World(hostname=HOST)),
    "torchrun": (TORCHRUN, World(rank=3, local_rank=1, world_size=4, local_world_size=2, node_rank=1, num_nodes=2,
                                 master_addr="node-a", master_port=29400, launcher="torchrun", hostname=HOST,
                                 job_id="run7")),
    "torchrun inside slurm": ({**SRUN_ONE_TASK_PER_NODE, **TORCHRUN},
                              World(rank=3, local_rank=1, world_size=4, local_world_size=2, node_rank=1, num_nodes=2,
                                    master_addr="node-a", master_port=29400, launcher="torchrun", hostname=HOST,
                                    job_id="run7")),
    "srun 1 node 4 tasks": (SRUN_ONE_NODE, World(rank=3, local_rank=3, world_size=4, local_world_size=4,
                                                 master_addr="gpu007", master_port=15000 + 1234, launcher="slurm",
                                                 hostname=HOST, job_id="1234")),
    "srun 2 nodes uneven": (SLURM_STEP_RANK2, World(rank=2, local_rank=0, world_size=3, local_world_size=1,
                                                    node_rank=1, num_nodes=2, master_addr="n1", master_port=15044,
                                                    launcher="slurm", hostname=HOST, job_id="44")),
    "srun -n1 in an array task": (SLURM_ARRAY_SUBSTEP, World(master_addr="n1", master_port=15048, launcher="slurm",
                                                            hostname=HOST, job_id="47_0")),
    "submitit slurm": ({**SLURM_STEP_RANK2, "SUBMITIT_EXECUTOR": "slurm", "SLURM_JOB_NAME": "submitit",
                        "SUBMITIT_FOLDER": "/runs/x"},
                       World(rank=2, local_rank=0, world_size=3, local_world_size=1, node_rank=1, num_nodes=2,
                             master_addr="n1", master_port=15044, launcher="submitit", hostname=HOST, job_id="44")),
    "submitit local": (SUBMITIT_LOCAL, World(rank=1, local_rank=1, world_size=2, local_world_size=2,
                                             master_addr="127.0.0.1", master_port=15000 + 31337 % 17000,
                                             launcher="submitit", hostname=HOST, job_id="31337")),
    "submitit local inside an allocation": ({**SALLOC_SHELL, **SUBMITIT_LOCAL},
                                            World(rank=1, local_rank=1, world_size=2, local_world_size=2,
                                                  master_addr="127.0.0.1", master_port=15000 + 31337 % 17000,
                                                  launcher="submitit", hostname=HOST, job_id="31337")),
    "horovodrun gloo": (HOROVOD_GLOO, World(rank=2, local_rank=0, world_size=4, local_world_size=2, node_rank=1,
                                            num_nodes=2, master_addr="10.0.0.1", master_port=derive_port("40123"),
                                            launcher="horovod", hostname=HOST)),
    "openmpi in slurm": (OPENMPI_IN_SLURM, World(rank=3, local_rank=1, world_size=4, local_world_size=2,
                                                 node_rank=1, num_nodes=2, master_addr="n1", master_port=15044,
                                                 launcher="mpi", hostname=HOST, job_id="44")),
    "openmpi one node": (OPENMPI_ONE_NODE, World(rank=1, local_rank=1, world_size=2, local_world_size=2,
                                                 master_addr="127.0.0.1", master_port=derive_port("prterun-vm-4242@1"),
                                                 launcher="mpi", hostname=HOST)),
    "mpich hydra": (MPICH_HYDRA, World(rank=5, local_rank=1, world_size=8, local_world_size=4, node_rank=1,
                                       num_nodes=2, master_addr="head", master_port=23456, launcher="mpi",
                                       hostname=HOST)),
    "srun --mpi=pmi2": ({**SRUN_ONE_NODE, "PMI_RANK": "3", "PMI_SIZE": "4"}, None),  # same World as plain srun
    "salloc shell": (SALLOC_SHELL, World(hostname=HOST, job_id="49")),
    "srun --pty bash": ({**SALLOC_SHELL, "SLURM_JOB_NAME": "bash", "SLURM_STEP_ID": "0", "SLURM_PROCID": "0",
                         "SLURM_LOCALID": "0", "SLURM_NODEID": "0", "SLURM_STEP_NUM_TASKS": "1",
                         "SLURM_STEP_TASKS_PER_NODE": "1", "SLURM_STEP_NODELIST": "n1"},
                        World(master_addr="n1", master_port=15049, launcher="slurm", hostname=HOST, job_id="49")),
    "batch script with one task": ({**SLURM_BATCH, "SLURM_NTASKS": "1", "SLURM_JOB_NUM_NODES": "1",
                                    "SLURM_JOB_NODELIST": "n1"}, World(hostname=HOST, job_id="44")),
    "batch step id": ({**SLURM_BATCH, "SLURM_STEP_ID": "4294967291", "HPCNN_SINGLE_PROCESS": "1"},
                      World(hostname=HOST, job_id="44")),
    "forced single in a batch script": ({**SLURM_BATCH, "HPCNN_SINGLE_PROCESS": "1"},
                                        World(hostname=HOST, job_id="44")),
    "explicit master in srun": ({**SLURM_STEP_RANK2, "MASTER_ADDR": "10.1.1.1", "MASTER_PORT": "23000"},
                                World(rank=2, local_rank=0, world_size=3, local_world_size=1, node_rank=1, num_nodes=2,
                                      master_addr="10.1.1.1", master_port=23000, launcher="slurm", hostname=HOST,
                                      job_id="44")),
}


@pytest.mark.parametrize("env,expected", LAUNCHES.values(), ids=LAUNCHES.keys())
def test_each_launch_gives_its_world(env, expected):
    if expected is None:  # srun --mpi=pmi2: a plain srun step, described by the Slurm detector
        expected = detect_world({k: v for k, v in env.items() if not k.startswith("PMI_")}, hostname=HOST)
    assert detect_world(MappingProxyType(env), hostname=HOST) == expected  # read-only: detection never writes


def test_default_environment_is_os_environ(monkeypatch):
    for name in [k for k in os.environ if k.startswith(("SLURM_", "SUBMITIT_", "OMPI_", "PMI_", "HOROVOD_"))]:
        monkeypatch.delenv(name)
    for name in ("RANK", "WORLD_SIZE", "TORCHELASTIC_RUN_ID", "HPCNN_SINGLE_PROCESS", "MASTER_PORT"):
        monkeypatch.delenv(name, raising=False)
    for key, value in SRUN_ONE_NODE.items():
        monkeypatch.setenv(key, value)
    world = detect_world()
    assert (world.rank, world.world_size, world.launcher) == (3, 4, "slurm")


def test_detection_order_puts_torchrun_first_and_slurm_after_mpi_and_submitit_local():
    assert [name for name, _ in DETECTORS] == ["torchrun", "horovod", "mpi", "submitit-local", "slurm"]


# --- launches that must stop with one line naming the variable -------------------------------------------------

def _fails(env, *needles):
    with pytest.raises(WorldError) as err:
        detect_world(env, hostname=HOST)
    message = str(err.value)
    assert "\n" not in message
    for needle in needles:
        assert needle in message, message
    return message


def test_batch_script_without_srun_names_the_fix():
    message = _fails(SLURM_BATCH, "this Slurm job has 3 tasks but python was started without srun: only one "
                                  "process runs", "srun python -m hpcnn", "HPCNN_SINGLE_PROCESS=1")
    assert "Slurm job 44" in message


def test_multi_node_batch_script_without_srun():
    env = {k: v for k, v in SLURM_BATCH.items() if k not in ("SLURM_NTASKS", "SLURM_NPROCS")}
    _fails(env, "this Slurm job has 2 nodes but python was started without srun")


def test_forced_single_process_under_a_multi_task_launch_is_refused():
    _fails({**SLURM_STEP_RANK2, "HPCNN_SINGLE_PROCESS": "1"}, "HPCNN_SINGLE_PROCESS=1 is set but slurm started 3",
           "unset HPCNN_SINGLE_PROCESS")


def test_forced_single_with_a_one_task_step_is_fine():
    assert detect_world({**SLURM_ARRAY_SUBSTEP, "HPCNN_SINGLE_PROCESS": "1"}, hostname=HOST).world_size == 1


@pytest.mark.parametrize("env,needles", [
    ({"HPCNN_SINGLE_PROCESS": "maybe"}, ["HPCNN_SINGLE_PROCESS='maybe' is not 1 or 0"]),
    ({**TORCHRUN, "RANK": "4"}, ["RANK=4 is out of range for WORLD_SIZE=4"]),
    ({**TORCHRUN, "RANK": "x"}, ["RANK='x' is not an integer"]),
    ({**TORCHRUN, "RANK": "-1"}, ["RANK=-1 must be at least 0"]),
    ({**TORCHRUN, "WORLD_SIZE": "0"}, ["WORLD_SIZE=0 must be at least 1"]),
    ({**TORCHRUN, "LOCAL_RANK": "2"}, ["LOCAL_RANK=2 is out of range for LOCAL_WORLD_SIZE=2"]),
    ({**TORCHRUN, "GROUP_RANK": "2"}, ["GROUP_RANK=2 is out of range for GROUP_WORLD_SIZE=2"]),
    ({**TORCHRUN, "WORLD_SIZE": "6", "RANK": "0"}, ["WORLD_SIZE=6 is not LOCAL_WORLD_SIZE=2 x GROUP_WORLD_SIZE=2"]),
    ({k: v for k, v in TORCHRUN.items() if k != "MASTER_ADDR"}, ["MASTER_ADDR is not", "export MASTER_ADDR"]),
    ({k: v for k, v in TORCHRUN.items() if k != "LOCAL_RANK"}, ["LOCAL_RANK is not set"]),
    ({"RANK": "0", "WORLD_SIZE": "2"}, ["LOCAL_RANK is not set"]),
    ({"RANK": "0", "WORLD_SIZE": "2", "LOCAL_RANK": "0"}, ["RANK and WORLD_SIZE are set but MASTER_ADDR is not"]),
    ({**TORCHRUN, "MASTER_PORT": "70000"}, ["MASTER_PORT=70000 is not a valid TCP port"]),
    ({**SLURM_STEP_RANK2, "SLURM_PROCID": "3"}, ["SLURM_PROCID=3 is out of range for SLURM_STEP_NUM_TASKS=3"]),
    ({**SLURM_STEP_RANK2, "SLURM_LOCALID": "1"},
     ["SLURM_LOCALID=1 is out of range for 1 tasks on node 1 (SLURM_STEP_TASKS_PER_NODE=2,1)"]),
    ({**SLURM_STEP_RANK2, "SLURM_STEP_TASKS_PER_NODE": "2(x2)"},
     ["SLURM_STEP_TASKS_PER_NODE=2(x2) adds up to 4 tasks but SLURM_STEP_NUM_TASKS=3"]),
    ({**SLURM_STEP_RANK2, "SLURM_STEP_TASKS_PER_NODE": "3"},
     ["SLURM_STEP_TASKS_PER_NODE=3 lists 1 nodes but SLURM_STEP_NUM_NODES=2"]),
    ({**SLURM_STEP_RANK2, "SLURM_STEP_NODELIST": "n[1-3]"},
     ["SLURM_STEP_NODELIST=n[1-3] names 3 hosts but SLURM_STEP_NUM_NODES=2"]),
    ({**SLURM_STEP_RANK2, "SLURM_STEP_NODELIST": "n[1-"}, ["host list 'n[1-'"]),
    ({**SLURM_STEP_RANK2, "SLURM_NODEID": "two"}, ["SLURM_NODEID='two' is not an integer"]),
    ({**SLURM_STEP_RANK2, "SLURM_STEP_NUM_TASKS": "3.0"}, ["SLURM_STEP_NUM_TASKS='3.0' is not an integer"]),
    ({**HOROVOD_GLOO, "HOROVOD_LOCAL_RANK": "2"}, ["HOROVOD_LOCAL_RANK=2 is out of range for HOROVOD_LOCAL_SIZE=2"]),
    ({k: v for k, v in OPENMPI_IN_SLURM.items() if not k.startswith("SLURM_")},
     ["mpirun started ranks on 2 nodes but no master address is known", "mpirun -x MASTER_ADDR="]),
    ({k: v for k, v in HOROVOD_GLOO.items() if k != "HOROVOD_GLOO_RENDEZVOUS_ADDR"},
     ["horovodrun started ranks on 2 nodes but no master address is known"]),
    ({**SUBMITIT_LOCAL, "SUBMITIT_LOCAL_GLOBALID": "2"},
     ["SUBMITIT_LOCAL_GLOBALID=2 is out of range for SUBMITIT_LOCAL_NTASKS=2"]),
], ids=lambda v: v[0] if isinstance(v, list) else None)
def test_inconsistent_launches_name_the_variable(env, needles):
    message = _fails(env, *needles)
    assert "hint:" in message


# --- ports, the World itself, and the checks against the request -------------------------------------------------

def test_every_rank_of_a_job_agrees_on_the_port_and_array_tasks_differ():
    ranks = [detect_world({**SLURM_STEP_RANK2, "SLURM_PROCID": str(r), "SLURM_NODEID": str(r // 2),
                           "SLURM_LOCALID": str(r % 2)}) for r in range(3)]
    assert len({(w.master_addr, w.master_port) for w in ranks}) == 1
    task0 = detect_world(SLURM_ARRAY_SUBSTEP)
    task1 = detect_world({**SLURM_ARRAY_SUBSTEP, "SLURM_ARRAY_TASK_ID": "1", "SLURM_JOB_ID": "47",
                          "SLURM_JOBID": "47"})
    assert task0.master_port != task1.master_port and task1.job_id == "47_1"


@pytest.mark.parametrize("job_id", ["1", "16999", "17000", "99999999", "4294967295", "prterun-x@1"])
def test_derived_ports_stay_below_the_ephemeral_range(job_id):
    assert 15000 <= derive_port(job_id) < 32768


def test_world_properties_and_describe():
    single = World(hostname="laptop")
    assert single.is_main and not single.is_distributed
    assert single.describe() == "single process on laptop (launcher: single)"
    world = LAUNCHES["srun 2 nodes uneven"][1]
    assert not world.is_main and world.is_distributed
    assert world.describe() == "rank 2/3 (local 0/1, node 1/2) on testhost via slurm, job 44, master n1:15044"
    with pytest.raises(dataclasses.FrozenInstanceError):
        world.rank = 0  # type: ignore[misc]


def test_two_ranks_on_one_gpu_is_an_error_with_a_hint():
    world = LAUNCHES["srun 1 node 4 tasks"][1]
    with pytest.raises(WorldError, match="4 processes on testhost share 2 visible GPUs.*srun --ntasks-per-node=2"):
        validate_against_request(world, gpus_visible=2)
    torchrun = LAUNCHES["torchrun"][1]
    with pytest.raises(WorldError, match="torchrun --nproc_per_node=2"):
        validate_against_request(dataclasses.replace(torchrun, local_world_size=4), gpus_visible=2)


def test_wasteful_launches_give_warnings_not_errors():
    world = LAUNCHES["srun 2 nodes uneven"][1]
    assert validate_against_request(dataclasses.replace(world, local_world_size=2, world_size=4)) == []
    warnings = validate_against_request(world, gpus_visible=2, nodes=2, tasks_per_node=2, gpus_per_node=2)
    assert any("only 1 of the 2 GPUs visible" in w for w in warnings)
    assert any("spread unevenly over 2 nodes" in w and "--ntasks-per-node" in w for w in warnings)
    assert any("asked for 2 task(s) per node but 1 run" in w for w in warnings)
    assert not any("node(s) but runs on" in w for w in warnings)
    single = validate_against_request(World(hostname="h"), gpus_visible=4)
    assert single == ["only 1 of the 4 GPUs visible on h will be used — hint: start one process per GPU "
                      "(torchrun --nproc_per_node=4 or srun --ntasks-per-node=4), or request fewer GPUs"]
    assert validate_against_request(world, gpus_visible=1) == [w for w in warnings if "unevenly" in w]


def test_env_package_imports_without_torch():
    code = ("import sys; sys.modules['torch'] = None; import hpcnn.env; "
            "print(hpcnn.env.detect_world({}).world_size, 'torch' in sys.modules and sys.modules['torch'] is not None)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["1", "False"]


# ---------------------------------------------------------------- GPUs held but unusable (issue 20, item 1)
CPU_BUILD = TorchCuda("2.5.0+cpu", None, False)
NO_DRIVER = TorchCuda("2.5.0+cu124", "12.4", False,
                      error="Found no NVIDIA driver on your system. Please check that you have an NVIDIA GPU\n"
                            "and installed a driver from http://www.nvidia.com/Download/index.aspx")
WORKING = TorchCuda("2.5.0+cu124", "12.4", True, device_count=1)
GPU_STEP = {"SLURM_JOB_ID": "7", "SLURM_GPUS_ON_NODE": "1", "SLURM_JOB_GPUS": "0", "SLURM_STEP_GPUS": "0",
            "CUDA_VISIBLE_DEVICES": "0"}


@pytest.mark.parametrize("environ, held", [
    (GPU_STEP, "SLURM_GPUS_ON_NODE=1"),
    ({"SLURM_JOB_GPUS": "2,3"}, "SLURM_JOB_GPUS=2,3"),
    ({"SLURM_STEP_GPUS": "0"}, "SLURM_STEP_GPUS=0"),
    ({"CUDA_VISIBLE_DEVICES": "GPU-8f1c"}, "CUDA_VISIBLE_DEVICES=GPU-8f1c"),
    ({"SLURM_GPUS_ON_NODE": "0", "CUDA_VISIBLE_DEVICES": ""}, None),
    ({"CUDA_VISIBLE_DEVICES": "NoDevFiles"}, None),
    ({"CUDA_VISIBLE_DEVICES": "-1"}, None),
    (SLURM_BATCH, None),
])
def test_held_gpus_reads_slurms_gpu_variables(environ, held):
    assert held_gpus(environ) == held


@pytest.mark.parametrize("cuda, cause", [
    (CPU_BUILD, "torch 2.5.0+cpu is a CPU-only build (torch.version.cuda is None)"),
    (NO_DRIVER, "torch 2.5.0+cu124 (CUDA 12.4) cannot use the GPUs: Found no NVIDIA driver on your system. "
                "Please check that you have an NVIDIA GPU and installed a driver from "
                "http://www.nvidia.com/Download/index.aspx"),
    (TorchCuda("2.5.0+cu124", "12.4", False),
     "torch 2.5.0+cu124 (CUDA 12.4) cannot use the GPUs: torch.cuda.is_available() is False"),
    (TorchCuda("2.5.0+cu124", "12.4", True, device_count=0), "no GPU is visible to torch"),
])
def test_a_job_given_gpus_that_torch_cannot_use_stops_with_one_line_naming_the_cause(cuda, cause):
    for device in ("auto", "cuda"):
        with pytest.raises(WorldError) as err:
            check_gpus_usable(GPU_STEP, device, cuda)
        text = str(err.value)
        assert "\n" not in text and text.startswith(f"the job was given GPUs but {cause}")
        assert "(SLURM_GPUS_ON_NODE=1)" in text and "train.device: cpu" in text


def test_gpus_are_not_required_when_none_are_held_they_work_or_the_cpu_is_asked_for():
    check_gpus_usable(GPU_STEP, "cpu", CPU_BUILD)       # explicit: train on the CPU on purpose
    check_gpus_usable(GPU_STEP, "auto", WORKING)
    check_gpus_usable(SLURM_BATCH, "auto", NO_DRIVER)   # no GPU allocated: CPU training is what was asked
    check_gpus_usable({}, "auto", CPU_BUILD)
