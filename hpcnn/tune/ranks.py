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
import time
from pathlib import Path

from ..files import atomic_write_json, safe_name

POLL_S = 0.2


class Assignments:
    def __init__(self, search_dir: Path, worker_id: str, restart: int, base_port: int = 29500):
        self.folder = Path(search_dir) / "workers" / safe_name(worker_id)
        self.prefix, self.seq, self.base_port = f"r{restart}-", 0, base_port

    def port(self) -> int:
        """The next trial's rendezvous port: the worker's own, moved on by one per trial (cycling within 500)."""
        offset = 1 + self.seq % 500
        return self.base_port + offset if self.base_port + offset <= 65535 else self.base_port - offset

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
