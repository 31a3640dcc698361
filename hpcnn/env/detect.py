"""detect_world(): the only place that turns launcher variables into a World.

Detectors are tried in order and the first that matches wins. torchrun comes first
because it can run inside a Slurm allocation (Lightning's reasoning); a plain process
is the fallback. A launch that would silently run fewer processes than the job asked
for, or hang waiting for peers, raises WorldError with a hint instead.
"""
from __future__ import annotations

import os
import socket
from typing import Callable, Mapping

from ..errors import WorldError
from . import hostlist
from .world import World

Env = Mapping[str, str]


def _int(env: Env, name: str, default: int | None = None) -> int:
    raw = env.get(name)
    if raw is None or raw == "":
        if default is None:
            raise WorldError(f"environment variable {name} is missing")
        return default
    try:
        return int(raw)
    except ValueError:
        raise WorldError(f"environment variable {name}={raw!r} is not an integer") from None


def slurm_port(job_id: str | None) -> int:
    """Every rank of a job derives the same port; concurrent jobs on a node get different ones."""
    try:
        return 15000 + int(job_id or 0) % 20000
    except ValueError:
        return 29500


def _torchrun(env: Env) -> World | None:
    if "TORCHELASTIC_RUN_ID" not in env and not all(k in env for k in ("RANK", "WORLD_SIZE", "LOCAL_RANK")):
        return None
    world_size = _int(env, "WORLD_SIZE")
    local_ws = _int(env, "LOCAL_WORLD_SIZE", world_size)
    return World(rank=_int(env, "RANK"), local_rank=_int(env, "LOCAL_RANK"), world_size=world_size,
                 local_world_size=local_ws, node_rank=_int(env, "GROUP_RANK", 0),
                 num_nodes=max(1, world_size // max(1, local_ws)),
                 master_addr=env.get("MASTER_ADDR", "127.0.0.1"), master_port=_int(env, "MASTER_PORT", 29500),
                 launcher="torchrun", job_id=env.get("TORCHELASTIC_RUN_ID"))


def _horovod(env: Env) -> World | None:
    if "HOROVOD_RANK" not in env or "HOROVOD_SIZE" not in env:
        return None
    size, local_size = _int(env, "HOROVOD_SIZE"), _int(env, "HOROVOD_LOCAL_SIZE", 1)
    return World(rank=_int(env, "HOROVOD_RANK"), local_rank=_int(env, "HOROVOD_LOCAL_RANK", 0), world_size=size,
                 local_world_size=local_size, node_rank=_int(env, "HOROVOD_CROSS_RANK", 0),
                 num_nodes=_int(env, "HOROVOD_CROSS_SIZE", max(1, size // max(1, local_size))),
                 master_addr=env.get("HOROVOD_GLOO_RENDEZVOUS_ADDR", "127.0.0.1"),
                 master_port=_int(env, "HOROVOD_GLOO_RENDEZVOUS_PORT", 29500), launcher="horovod")


def _submitit_local(env: Env) -> World | None:
    if "SUBMITIT_LOCAL_GLOBALID" not in env:
        return None
    n = _int(env, "SUBMITIT_LOCAL_NTASKS", 1)
    job = env.get("SUBMITIT_LOCAL_JOB_ID")
    return World(rank=_int(env, "SUBMITIT_LOCAL_GLOBALID"), local_rank=_int(env, "SUBMITIT_LOCAL_LOCALID", 0),
                 world_size=n, local_world_size=n, master_addr="127.0.0.1",
                 master_port=_int(env, "MASTER_PORT", slurm_port(job)), launcher="submitit", job_id=job)


def _slurm(env: Env) -> World | None:
    if "SLURM_PROCID" not in env or "SLURM_JOB_ID" not in env:
        return None
    in_step = "SLURM_STEP_ID" in env or "SLURM_STEPID" in env
    ntasks = _int(env, "SLURM_STEP_NUM_TASKS", 0) or _int(env, "SLURM_NTASKS", 1)
    if not in_step:
        if ntasks > 1 and env.get("SLURM_JOB_NAME") not in ("bash", "interactive", "sh", "zsh"):
            raise WorldError(f"this Slurm job has {ntasks} tasks but python was started without srun: "
                             "only one process would run", f"job {env['SLURM_JOB_ID']}",
                             "launch with `srun python -m hpcnn train ...`, or set HPCNN_SINGLE_PROCESS=1 "
                             "to run one process on purpose")
        return None  # the batch shell or an interactive allocation: one process
    job_id = env["SLURM_JOB_ID"]
    nodelist = env.get("SLURM_STEP_NODELIST") or env.get("SLURM_JOB_NODELIST") or env.get("SLURM_NODELIST")
    if not nodelist:
        raise WorldError("SLURM_JOB_NODELIST is not set inside an srun step", f"job {job_id}")
    per_node = hostlist.tasks_per_node(env.get("SLURM_STEP_TASKS_PER_NODE") or env.get("SLURM_TASKS_PER_NODE")
                                       or str(ntasks))
    node_rank = _int(env, "SLURM_NODEID", 0)
    launcher = "submitit" if env.get("SUBMITIT_EXECUTOR") == "slurm" else "slurm"
    return World(rank=_int(env, "SLURM_PROCID"), local_rank=_int(env, "SLURM_LOCALID", 0), world_size=ntasks,
                 local_world_size=per_node[node_rank] if node_rank < len(per_node) else per_node[0],
                 node_rank=node_rank, num_nodes=len(hostlist.expand(nodelist)),
                 master_addr=env.get("MASTER_ADDR") or hostlist.first(nodelist),
                 master_port=_int(env, "MASTER_PORT", slurm_port(job_id)), launcher=launcher, job_id=job_id)


def _mpi(env: Env) -> World | None:
    if "OMPI_COMM_WORLD_RANK" in env:
        prefix = "OMPI_COMM_WORLD_"
        rank, size = _int(env, prefix + "RANK"), _int(env, prefix + "SIZE")
        local, local_size = _int(env, prefix + "LOCAL_RANK", 0), _int(env, prefix + "LOCAL_SIZE", 1)
    elif "PMI_RANK" in env and "PMI_SIZE" in env:
        rank, size = _int(env, "PMI_RANK"), _int(env, "PMI_SIZE")
        local, local_size = _int(env, "MPI_LOCALRANKID", 0), _int(env, "MPI_LOCALNRANKS", 1)
    else:
        return None
    addr = env.get("MASTER_ADDR")
    nodelist = env.get("SLURM_JOB_NODELIST")
    if not addr and nodelist:
        addr = hostlist.first(nodelist)
    if not addr and size > 1:
        raise WorldError(f"launched by MPI with {size} ranks but no master address is known", f"rank {rank}",
                         "export MASTER_ADDR (the first rank's host) and MASTER_PORT to all ranks")
    return World(rank=rank, local_rank=local, world_size=size, local_world_size=local_size,
                 num_nodes=max(1, size // max(1, local_size)), master_addr=addr or "127.0.0.1",
                 master_port=_int(env, "MASTER_PORT", slurm_port(env.get("SLURM_JOB_ID"))), launcher="mpi")


DETECTORS: list[tuple[str, Callable[[Env], World | None]]] = [
    ("torchrun", _torchrun), ("horovod", _horovod), ("submitit-local", _submitit_local), ("slurm", _slurm),
    ("mpi", _mpi),
]


def validate(world: World) -> World:
    checks = [
        (0 <= world.rank < world.world_size, f"rank {world.rank} is outside world size {world.world_size}"),
        (0 <= world.local_rank < max(1, world.local_world_size),
         f"local rank {world.local_rank} is outside local world size {world.local_world_size}"),
        (1 <= world.master_port <= 65535, f"master port {world.master_port} is not a valid port"),
    ]
    for ok, message in checks:
        if not ok:
            raise WorldError(message, f"launcher {world.launcher}", "check how the job was launched")
    return world


def detect_world(environ: Env | None = None) -> World:
    env = os.environ if environ is None else environ
    host = socket.gethostname()
    if env.get("HPCNN_SINGLE_PROCESS") == "1":
        return World(hostname=host)
    for _name, detector in DETECTORS:
        world = detector(env)
        if world is not None:
            return validate(World(**{**world.__dict__, "hostname": host}))
    return World(hostname=host, launcher="single", job_id=env.get("SLURM_JOB_ID"))
