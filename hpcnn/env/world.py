"""World: who this process is in a (possibly) distributed job. Pure data, stdlib only.

Training code receives a World and never reads launcher variables itself, so torchrun,
srun, submitit, horovodrun, mpirun and plain ``python`` differ only in how it was built
(see :func:`hpcnn.env.detect_world`).
"""
from __future__ import annotations

from dataclasses import dataclass

LAUNCHERS = ("single", "torchrun", "slurm", "submitit", "horovod", "mpi")


@dataclass(frozen=True)
class World:
    rank: int = 0                 # global rank, 0 .. world_size-1
    local_rank: int = 0           # rank among the processes on this node (picks the GPU)
    world_size: int = 1
    local_world_size: int = 1     # processes on this node
    node_rank: int = 0            # this node's index, 0 .. num_nodes-1
    num_nodes: int = 1
    master_addr: str = "127.0.0.1"  # where rank 0 listens for the rendezvous
    master_port: int = 29500
    launcher: str = "single"      # one of LAUNCHERS
    hostname: str = "localhost"
    job_id: str | None = None     # Slurm job id ("47_0" for array task 0 of 47), run id or local job id

    @property
    def is_distributed(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        """Rank 0 writes checkpoints, logs and summaries."""
        return self.rank == 0

    def describe(self) -> str:
        """One line for the job log: enough to tell ranks and launches apart."""
        job = f", job {self.job_id}" if self.job_id else ""
        if not self.is_distributed:
            return f"single process on {self.hostname} (launcher: {self.launcher}{job})"
        return (f"rank {self.rank}/{self.world_size} (local {self.local_rank}/{self.local_world_size}, "
                f"node {self.node_rank}/{self.num_nodes}) on {self.hostname} via {self.launcher}{job}, "
                f"master {self.master_addr}:{self.master_port}")
