"""A distributed trial's one decision-maker: rank 0 asks the study, the other ranks follow it.

Every rank of a worker runs the worker; only rank 0 talks to the study. Before each trial it
publishes what to train (the trial's overrides and run directory) as a numbered file under
``SEARCH_DIR/workers/<worker>/``, and ``{"done": true}`` at the end; the other ranks read the
files in order and train the same config in the same run directory, so the Trainer's own process
group does the rest (the pruning decision is broadcast from rank 0 by ``TrialReporter``). Files,
not a collective: a worker's ranks have no process group between trials (each trial's run_job
makes and ends its own). The restart count is in the names, so a requeued worker never reads
what its previous run published.
"""
from __future__ import annotations

import json
import socket
import time
from pathlib import Path

from ..files import atomic_write_json, safe_name

POLL_S = 0.2


class Assignments:
    def __init__(self, search_dir: Path, worker_id: str, restart: int):
        self.folder = Path(search_dir) / "workers" / safe_name(worker_id)
        self.prefix, self.seq = f"r{restart}-", 0

    @staticmethod
    def port() -> int:
        """The next trial's rendezvous port (rank 0): one the OS finds free on this host, where the trial's
        store listens, as torchrun --standalone does; the other ranks read it from the assignment.

        Was: the worker's job port + 1, + 2, ...: on a node shared with other jobs that walked into the
        port another job derives from its own id (EADDRINUSE; seen on the local cluster).
        """
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
            probe.bind(("", 0))
            return probe.getsockname()[1]

    def _path(self) -> Path:
        return self.folder / f"{self.prefix}{self.seq:05d}.json"

    def publish(self, message: dict) -> None:
        """Rank 0: the next trial to train (or done)."""
        self.folder.mkdir(parents=True, exist_ok=True)
        atomic_write_json(self._path(), message)
        self.seq += 1

    def receive(self) -> dict:
        """Ranks > 0: wait for rank 0's next message (the job's walltime bounds the wait; srun ends a
        worker whose rank 0 died)."""
        path = self._path()
        while not path.is_file():
            time.sleep(POLL_S)
        self.seq += 1
        return json.loads(path.read_text())


__all__ = ["Assignments"]
