"""detect_world(): the only place in hpcnn that turns launcher variables into a World.

Detectors are tried in a fixed order and the first that matches wins:

1. torchrun / TorchElastic - first, because torchrun also runs inside Slurm allocations;
2. horovodrun (gloo mode sets HOROVOD_RANK & co.);
3. MPI (mpirun, or Hydra's PMI_RANK) - before Slurm, because ranks that mpirun starts inside an
   allocation inherit the SLURM_* variables of mpirun's own daemon step;
4. submitit's LocalExecutor - before Slurm, because it inherits whatever shell submitted it;
5. a Slurm srun step (submitit's Slurm jobs are srun steps too);
6. otherwise one process.

A launch that would silently run fewer processes than the job asked for (``python`` instead of
``srun python`` in a multi-task batch script), or whose variables contradict each other, raises
WorldError naming the variable. ``HPCNN_SINGLE_PROCESS=1`` runs one process on purpose.
"""
from __future__ import annotations

import dataclasses
import os
import socket
import zlib
from typing import Callable, Mapping, NamedTuple

from ..errors import WorldError
from . import hostlist
from .world import World

Env = Mapping[str, str]

#: Job names of shells started by salloc / an interactive session: a person types commands there.
INTERACTIVE_JOB_NAMES = frozenset({"bash", "sh", "zsh", "fish", "tcsh", "csh", "interactive"})
#: SLURM_STEP_ID values that are not srun steps (the batch script, extern and interactive steps).
_SPECIAL_STEP_NAMES = frozenset({"batch", "extern", "interactive", "pending"})
_SPECIAL_STEP_MIN = 0xFFFFFFF0  # Slurm's reserved step ids (SLURM_BATCH_SCRIPT = 0xfffffffb, ...)
_PORT_BASE, _PORT_SPAN = 15000, 17000  # 15000..31999: below Linux's ephemeral range (32768+)
_SRUN_HINT = "launch with srun; do not copy SLURM_* variables by hand"


class Count(NamedTuple):
    """An integer together with where it came from, so errors can name the variable."""

    value: int
    shown: str  # e.g. "SLURM_PROCID=5"


class _Reader:
    """Typed access to launcher variables; every error names the variable it read."""

    def __init__(self, environ: Env, where: str):
        self.environ = environ
        self.where = where

    def pick(self, *names: str) -> tuple[str, str] | None:
        """(name, value) of the first of ``names`` that is set and not empty."""
        for name in names:
            value = self.environ.get(name)
            if value is not None and value.strip() != "":
                return name, value.strip()
        return None

    def has(self, *names: str) -> bool:
        return self.pick(*names) is not None

    def text(self, *names: str) -> str | None:
        found = self.pick(*names)
        return found[1] if found else None

    def count(self, *names: str, minimum: int = 0, required: bool = True) -> Count | None:
        found = self.pick(*names)
        if found is None:
            if not required:
                return None
            raise WorldError(f"{' or '.join(names)} is not set", self.where,
                             "the launcher did not set it: start the job with the launcher's own command")
        name, raw = found
        try:
            value = int(raw)
        except ValueError:
            raise WorldError(f"{name}={raw!r} is not an integer", self.where,
                             f"unset or fix {name}; launchers set it to a whole number") from None
        if value < minimum:
            raise WorldError(f"{name}={raw} must be at least {minimum}", self.where,
                             f"unset or fix {name}")
        return Count(value, f"{name}={raw}")


def derive_port(key: str | None, default: int = 29500) -> int:
    """A port every rank derives alike from a job id; concurrent jobs on one node get different ones.

    Integer ids (Slurm job ids are unique per array task) map to 15000 + id % 17000, which stays
    below Linux's default ephemeral port range; other keys are hashed the same way.
    """
    if not key:
        return default
    number = int(key) if key.isdigit() else zlib.crc32(key.encode())
    return _PORT_BASE + number % _PORT_SPAN


def _master_port(r: _Reader, key: str | None, what: str) -> Count:
    """MASTER_PORT when set, else the port derived from ``key``, the ``what`` (e.g. "Slurm job") id."""
    port = derive_port(key)
    shown = f"port {port} derived from {what} {key}" if key else f"default port {port}"
    return r.count("MASTER_PORT", required=False) or Count(port, shown)


def _assemble(r: _Reader, launcher: str, rank: Count, local_rank: Count, world_size: Count,
              local_world_size: Count, node_rank: Count, num_nodes: Count, master_addr: str,
              master_port: Count, job_id: str | None) -> World:
    """Check that the numbers fit together, then build the World (hostname is filled in later)."""
    for small, big in ((rank, world_size), (local_rank, local_world_size), (node_rank, num_nodes)):
        if small.value >= big.value:
            raise WorldError(f"{small.shown} is out of range for {big.shown}", r.where,
                             "the launch variables contradict each other; relaunch with the launcher's own "
                             "command instead of setting them by hand")
    if local_world_size.value > world_size.value:
        raise WorldError(f"{local_world_size.shown} is larger than {world_size.shown}", r.where,
                         "relaunch with the launcher's own command")
    if not 1 <= master_port.value <= 65535:
        raise WorldError(f"{master_port.shown} is not a valid TCP port", r.where, "set MASTER_PORT to 1024..65535")
    return World(rank=rank.value, local_rank=local_rank.value, world_size=world_size.value,
                 local_world_size=local_world_size.value, node_rank=node_rank.value, num_nodes=num_nodes.value,
                 master_addr=master_addr, master_port=master_port.value, launcher=launcher, job_id=job_id)


def _torchrun(env: Env) -> World | None:
    """torchrun always sets RANK, LOCAL_RANK, WORLD_SIZE, LOCAL_WORLD_SIZE, GROUP_*, MASTER_*."""
    r = _Reader(env, "torchrun")
    if not (r.has("TORCHELASTIC_RUN_ID") or r.has("RANK") and r.has("WORLD_SIZE")):
        return None
    run_id = r.text("TORCHELASTIC_RUN_ID")
    r.where = f"torchrun run {run_id}" if run_id else "RANK/WORLD_SIZE set in the environment"
    rank, local_rank = r.count("RANK"), r.count("LOCAL_RANK")
    world_size = r.count("WORLD_SIZE", minimum=1)
    local_world_size = r.count("LOCAL_WORLD_SIZE", required=False, minimum=1) or world_size
    node_rank = r.count("GROUP_RANK", required=False) or Count(0, "node 0")
    num_nodes = r.count("GROUP_WORLD_SIZE", required=False, minimum=1)
    if num_nodes is None:
        nodes = max(1, world_size.value // local_world_size.value)
        num_nodes = Count(nodes, f"{nodes} node(s) from {world_size.shown} / {local_world_size.shown}")
    elif world_size.value != local_world_size.value * num_nodes.value:
        raise WorldError(f"{world_size.shown} is not {local_world_size.shown} x {num_nodes.shown}", r.where,
                         "relaunch with torchrun instead of setting the variables by hand")
    for name in ("MASTER_ADDR", "MASTER_PORT"):
        if not r.has(name):
            raise WorldError(f"RANK and WORLD_SIZE are set but {name} is not", r.where,
                             "launch with torchrun, or export MASTER_ADDR and MASTER_PORT to every rank")
    return _assemble(r, "torchrun", rank, local_rank, world_size, local_world_size,
                     node_rank, num_nodes, r.text("MASTER_ADDR"), r.count("MASTER_PORT"), run_id)


def _slurm_job_id(r: _Reader) -> str | None:
    """What a person sees in squeue: "47_0" for task 0 of array 47, else the job id."""
    array_job, array_task = r.text("SLURM_ARRAY_JOB_ID"), r.text("SLURM_ARRAY_TASK_ID")
    if array_job and array_task:
        return f"{array_job}_{array_task}"
    return r.text("SLURM_JOB_ID", "SLURM_JOBID")


def _horovod(env: Env) -> World | None:
    """horovodrun --gloo sets HOROVOD_{RANK,SIZE,LOCAL_RANK,LOCAL_SIZE,CROSS_RANK,CROSS_SIZE,HOSTNAME}
    and HOROVOD_GLOO_RENDEZVOUS_{ADDR,PORT}. (horovodrun in MPI mode sets no HOROVOD_RANK: the MPI
    detector finds it.) Horovod itself rendezvouses through its own server; master_addr/port name
    that host and a port derived from the job, for anything that needs a TCP store beside it."""
    r = _Reader(env, "horovodrun")
    if not r.has("HOROVOD_RANK"):
        return None
    world_size = r.count("HOROVOD_SIZE", minimum=1)
    local_world_size = r.count("HOROVOD_LOCAL_SIZE", minimum=1)
    num_nodes = r.count("HOROVOD_CROSS_SIZE", required=False, minimum=1) or _nodes_from(world_size, local_world_size)
    node_rank = r.count("HOROVOD_CROSS_RANK", required=False) or Count(0, "node 0")
    master_addr = _master_addr(r, num_nodes, "horovodrun", "MASTER_ADDR", "HOROVOD_GLOO_RENDEZVOUS_ADDR")
    key = r.text("SLURM_JOB_ID", "SLURM_JOBID") or r.text("HOROVOD_GLOO_RENDEZVOUS_PORT")
    return _assemble(r, "horovod", r.count("HOROVOD_RANK"), r.count("HOROVOD_LOCAL_RANK"), world_size,
                     local_world_size, node_rank, num_nodes, master_addr,
                     _master_port(r, key, "job" if r.has("SLURM_JOB_ID", "SLURM_JOBID") else "rendezvous port"),
                     _slurm_job_id(r))


def _nodes_from(world_size: Count, local_world_size: Count) -> Count:
    """Nodes of ``local_world_size`` ranks each that hold ``world_size`` ranks (the last may hold fewer)."""
    nodes = -(-world_size.value // local_world_size.value)
    return Count(nodes, f"{nodes} node(s) from {world_size.shown} / {local_world_size.shown}")


def _master_addr(r: _Reader, num_nodes: Count, launcher: str, *names: str) -> str:
    """The first of ``names`` that is set, else the first host of the Slurm job (the job's, not the
    variables of mpirun's daemon step). Without any address to go by, localhost is right only when
    every rank runs on this node."""
    slurm_nodes = r.text("SLURM_JOB_NODELIST", "SLURM_NODELIST")
    found = r.text(*names) or (hostlist.first(slurm_nodes) if slurm_nodes else None)
    if found is not None:
        return found
    if num_nodes.value > 1:
        how = ("`mpirun -x MASTER_ADDR=$(hostname) -x MASTER_PORT=29500 ...`" if launcher == "mpirun"
               else f"export them before `{launcher}`, which passes them on")
        raise WorldError(f"{launcher} started ranks on {num_nodes.value} nodes but no master address is known",
                         r.where, f"give every rank MASTER_ADDR (the host of rank 0) and MASTER_PORT: {how}")
    return "127.0.0.1"


_MPI_NAMES = {  # (rank, size, local rank, local size) per MPI family
    "openmpi": ("OMPI_COMM_WORLD_RANK", "OMPI_COMM_WORLD_SIZE", "OMPI_COMM_WORLD_LOCAL_RANK",
                "OMPI_COMM_WORLD_LOCAL_SIZE"),
    "pmi": ("PMI_RANK", "PMI_SIZE", "MPI_LOCALRANKID", "MPI_LOCALNRANKS"),  # MPICH / Intel MPI (Hydra)
}


def _mpi(env: Env) -> World | None:
    """mpirun / mpiexec. Nodes are assumed to hold the same number of consecutive ranks (by-slot
    mapping); the master is MASTER_ADDR, else the first host of the Slurm job, else localhost when
    every rank runs on this node."""
    r = _Reader(env, "mpirun")
    family = next((f for f, names in _MPI_NAMES.items() if r.has(names[0]) and r.has(names[1])), None)
    if family is None:
        return None
    rank_name, size_name, local_name, local_size_name = _MPI_NAMES[family]
    rank, world_size = r.count(rank_name), r.count(size_name, minimum=1)
    if _slurm_step(r) and r.text("SLURM_PROCID") == str(rank.value) and \
            r.text("SLURM_STEP_NUM_TASKS", "SLURM_NTASKS") == str(world_size.value):
        return None  # `srun --mpi=pmi2 python`: a plain srun step, the Slurm detector describes it best
    local_rank = r.count(local_name, required=False) or Count(0, "local rank 0 (no " + local_name + ")")
    local_world_size = r.count(local_size_name, required=False, minimum=1) or \
        Count(1, "1 rank per node (no " + local_size_name + ")")
    num_nodes = _nodes_from(world_size, local_world_size)
    node = rank.value // local_world_size.value
    node_rank = Count(node, f"node {node} from {rank.shown} // {local_world_size.shown}")
    master_addr = _master_addr(r, num_nodes, "mpirun", "MASTER_ADDR")
    slurm_job = r.text("SLURM_JOB_ID", "SLURM_JOBID")
    key = slurm_job or r.text("PMIX_NAMESPACE", "OMPI_MCA_ess_base_jobid")
    return _assemble(r, "mpi", rank, local_rank, world_size, local_world_size, node_rank, num_nodes,
                     master_addr, _master_port(r, key, "job" if slurm_job else "MPI job"), _slurm_job_id(r))


def _submitit_local(env: Env) -> World | None:
    """submitit's LocalExecutor: one node; each task gets SUBMITIT_LOCAL_{GLOBALID,LOCALID}, all share
    SUBMITIT_LOCAL_{NTASKS,JOB_ID} (the controller's pid) and SUBMITIT_LOCAL_{NODEID,JOB_NUM_NODES}."""
    r = _Reader(env, "submitit LocalExecutor")
    if not r.has("SUBMITIT_LOCAL_GLOBALID"):
        return None
    job_id = r.text("SUBMITIT_LOCAL_JOB_ID")
    r.where = f"submitit local job {job_id}"
    ntasks = r.count("SUBMITIT_LOCAL_NTASKS", minimum=1)
    num_nodes = r.count("SUBMITIT_LOCAL_JOB_NUM_NODES", required=False, minimum=1) or Count(1, "1 node")
    node_rank = r.count("SUBMITIT_LOCAL_NODEID", required=False) or Count(0, "node 0")
    return _assemble(r, "submitit", r.count("SUBMITIT_LOCAL_GLOBALID"), r.count("SUBMITIT_LOCAL_LOCALID"),
                     ntasks, ntasks, node_rank, num_nodes, r.text("MASTER_ADDR") or "127.0.0.1",
                     _master_port(r, job_id, "local job"), job_id)


def _slurm_step(r: _Reader) -> bool:
    """True inside an srun step; false in the batch script, salloc's shell or the extern step."""
    step = r.text("SLURM_STEP_ID", "SLURM_STEPID")
    if step is None or step.lower() in _SPECIAL_STEP_NAMES or not r.has("SLURM_JOB_ID", "SLURM_JOBID"):
        return False
    return not (step.isdigit() and int(step) >= _SPECIAL_STEP_MIN)


def _slurm(env: Env) -> World | None:
    """An srun step. The step's variables (SLURM_STEP_*) win over the job's: ``srun -n1`` inside a
    4-task job is a 1-process world. SLURM_NODEID and SLURM_LOCALID are relative to the step."""
    r = _Reader(env, "Slurm")
    if not _slurm_step(r):
        return None
    job_id = _slurm_job_id(r)
    step = r.text("SLURM_STEP_ID", "SLURM_STEPID")
    r.where = f"srun step {step} of Slurm job {job_id}"
    world_size = r.count("SLURM_STEP_NUM_TASKS", "SLURM_NTASKS", "SLURM_NPROCS", minimum=1)
    found = r.pick("SLURM_STEP_NODELIST", "SLURM_JOB_NODELIST", "SLURM_NODELIST")
    if found is None:
        raise WorldError("SLURM_STEP_NODELIST is not set inside an srun step", r.where, _SRUN_HINT)
    name, nodelist = found
    hosts = hostlist.expand(nodelist)
    num_nodes = r.count("SLURM_STEP_NUM_NODES", "SLURM_NNODES", required=False, minimum=1) or \
        Count(len(hosts), f"{len(hosts)} node(s) in {name}={nodelist}")
    if len(hosts) != num_nodes.value:
        raise WorldError(f"{name}={nodelist} names {len(hosts)} hosts but {num_nodes.shown}", r.where, _SRUN_HINT)
    node_rank = r.count("SLURM_NODEID")
    local_world_size = _slurm_tasks_on_node(r, world_size, num_nodes, node_rank)
    launcher = "submitit" if r.text("SUBMITIT_EXECUTOR") == "slurm" else "slurm"
    return _assemble(r, launcher, r.count("SLURM_PROCID"), r.count("SLURM_LOCALID"), world_size,
                     local_world_size, node_rank, num_nodes, r.text("MASTER_ADDR") or hosts[0],
                     _master_port(r, r.text("SLURM_JOB_ID", "SLURM_JOBID"), "Slurm job"), job_id)


def _slurm_tasks_on_node(r: _Reader, world_size: Count, num_nodes: Count, node_rank: Count) -> Count:
    """Tasks on this node, from SLURM_STEP_TASKS_PER_NODE (``2(x3),1``), checked against the totals."""
    found = r.pick("SLURM_STEP_TASKS_PER_NODE", "SLURM_TASKS_PER_NODE")
    if found is None:  # old Slurm: only the job's --ntasks-per-node, or an even split
        per_node = r.count("SLURM_NTASKS_PER_NODE", required=False, minimum=1)
        return per_node or Count(world_size.value // num_nodes.value,
                                 f"{world_size.shown} split over {num_nodes.shown}")
    name, spec = found
    counts = hostlist.tasks_per_node(spec)
    shown = f"{name}={spec}"
    if len(counts) != num_nodes.value:
        raise WorldError(f"{shown} lists {len(counts)} nodes but {num_nodes.shown}", r.where, _SRUN_HINT)
    if sum(counts) != world_size.value:
        raise WorldError(f"{shown} adds up to {sum(counts)} tasks but {world_size.shown}", r.where, _SRUN_HINT)
    if node_rank.value >= len(counts):
        raise WorldError(f"{node_rank.shown} is out of range for {shown}", r.where, _SRUN_HINT)
    return Count(counts[node_rank.value], f"{counts[node_rank.value]} tasks on node {node_rank.value} ({shown})")


def _check_not_missing_srun(env: Env) -> None:
    """Inside a Slurm job but outside any srun step: fine for 1 task or an interactive shell;
    for a multi-task or multi-node batch job it means one process runs and the rest idle."""
    r = _Reader(env, "Slurm")
    job_id = _slurm_job_id(r)
    if job_id is None or _slurm_step(r):
        return
    if (r.text("SLURM_JOB_NAME") or "").lower() in INTERACTIVE_JOB_NAMES:
        return
    r.where = f"Slurm job {job_id}, batch script"
    ntasks = r.count("SLURM_NTASKS", "SLURM_NPROCS", required=False) or Count(1, "1 task")
    nodes = r.count("SLURM_JOB_NUM_NODES", "SLURM_NNODES", required=False) or Count(1, "1 node")
    if ntasks.value > 1 or nodes.value > 1:
        asked = f"{ntasks.value} tasks" if ntasks.value > 1 else f"{nodes.value} nodes"
        raise WorldError(f"this Slurm job has {asked} but python was started without srun: only one process runs",
                         r.where, "launch with `srun python -m hpcnn ...` (or set HPCNN_SINGLE_PROCESS=1 "
                         "to run one process on purpose)")


def _forced_single(env: Env) -> bool:
    raw = (env.get("HPCNN_SINGLE_PROCESS") or "").strip().lower()
    if raw in ("", "0", "false", "no", "off"):
        return False
    if raw in ("1", "true", "yes", "on"):
        return True
    raise WorldError(f"HPCNN_SINGLE_PROCESS={raw!r} is not 1 or 0", "environment",
                     "set HPCNN_SINGLE_PROCESS=1 to run one process on purpose, or unset it")


#: Tried in this order; the first that returns a World wins (see the module docstring for why).
DETECTORS: tuple[tuple[str, Callable[[Env], World | None]], ...] = (
    ("torchrun", _torchrun),
    ("horovod", _horovod),
    ("mpi", _mpi),
    ("submitit-local", _submitit_local),
    ("slurm", _slurm),
)


def detect_world(environ: Env | None = None, *, hostname: str | None = None) -> World:
    """The World of this process, from ``environ`` (default: os.environ). Raises WorldError for
    inconsistent launches. Pure apart from reading the host name; never changes the environment."""
    env = os.environ if environ is None else environ
    host = hostname or socket.gethostname()
    forced = _forced_single(env)
    world = next((found for _name, detector in DETECTORS if (found := detector(env)) is not None), None)
    if world is None:
        if not forced:
            _check_not_missing_srun(env)
        return World(hostname=host, launcher="single", job_id=_slurm_job_id(_Reader(env, "Slurm")))
    world = dataclasses.replace(world, hostname=host)
    if forced and world.is_distributed:
        raise WorldError(f"HPCNN_SINGLE_PROCESS=1 is set but {world.launcher} started {world.world_size} "
                         "processes: each would train alone and write the same run", world.describe(),
                         "unset HPCNN_SINGLE_PROCESS for launched runs (it is for a batch script "
                         "that runs one python on purpose)")
    return world
