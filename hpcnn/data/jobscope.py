"""The job a process loads data for: its rank, which ranks share its node, and its run directory.

``hpcnn.run`` binds it once the process group exists, so the data layer can list a folder on one
rank and hold in-memory sets once per node without every caller passing a communicator. Outside a
job (tests, ``hpcnn predict``, notebooks) the default is one process alone: it does all the work.
"""
from __future__ import annotations

import contextlib
import socket
from dataclasses import dataclass
from pathlib import Path

from ..dist.comm import SingleComm  # the collectives of a single process (no torch.distributed)


@dataclass
class DataJob:
    comm: object                 # rank, world_size, all_gather_object, broadcast_object, barrier
    run_dir: Path | None
    hosts: list[str]             # the host of every global rank

    @property
    def rank(self) -> int:
        return self.comm.rank

    @property
    def world_size(self) -> int:
        return self.comm.world_size

    @property
    def is_main(self) -> bool:
        return self.comm.rank == 0

    @property
    def node_leader(self) -> int:
        """The lowest global rank on this rank's host: it builds what the node shares."""
        return self.hosts.index(self.hosts[self.rank])

    @property
    def is_node_leader(self) -> bool:
        return self.node_leader == self.rank

    @property
    def ranks_on_node(self) -> int:
        return self.hosts.count(self.hosts[self.rank])


_BOUND: list[DataJob] = []


@contextlib.contextmanager
def bound(comm, run_dir: Path | None):
    """The data layer works for this job inside the block (the trainer's set-up), alone again after it.
    Entered by every rank at the same point (a collective): learns which ranks share a host."""
    hosts = comm.all_gather_object(socket.gethostname()) if comm.world_size > 1 else [socket.gethostname()]
    job = DataJob(comm, Path(run_dir) if run_dir else None, list(hosts))
    _BOUND[:] = [job]
    try:
        yield job
    finally:
        _BOUND.clear()


def current() -> DataJob:
    return _BOUND[0] if _BOUND else DataJob(SingleComm(), None, [socket.gethostname()])


__all__ = ["DataJob", "bound", "current"]
