"""World: who this process is in a (possibly) distributed job. Pure data, stdlib only."""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class World:
    rank: int = 0
    local_rank: int = 0
    world_size: int = 1
    local_world_size: int = 1
    node_rank: int = 0
    num_nodes: int = 1
    master_addr: str = "127.0.0.1"
    master_port: int = 29500
    launcher: str = "single"  # single | torchrun | slurm | submitit | horovod | mpi
    hostname: str = "localhost"
    job_id: str | None = None

    @property
    def is_distributed(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def describe(self) -> str:
        if not self.is_distributed:
            return f"single process on {self.hostname} (launcher: {self.launcher})"
        return (f"rank {self.rank}/{self.world_size} (local {self.local_rank}/{self.local_world_size}, node "
                f"{self.node_rank}/{self.num_nodes}) on {self.hostname} via {self.launcher}, master "
                f"{self.master_addr}:{self.master_port}" + (f", job {self.job_id}" if self.job_id else ""))
