"""``hpcnn logs JOB --follow``: print what a job's logs gain, like ``tail -f``, until the job leaves the queue.

Reads only the bytes added since the last look (never the whole file again), asks the live
queue (squeue, one query per round) whether the job is still there, and sleeps at least one
second between rounds. When the job has left the queue the last lines written are printed
and it returns; Ctrl-C stops it at once (the caller turns that into a clean exit).
"""
from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Callable, Sequence

from ..site import commands
from .status import tail_lines

MIN_INTERVAL_S = 1.0


class Tail:
    """One file being followed: where we are in it, and its name for the ``==> path <==`` headers."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self.position = 0

    def start(self, lines: int) -> str:
        """The last ``lines`` lines now (all for 0), and remember the end as the place to go on from."""
        try:
            self.position = self.path.stat().st_size
        except OSError:
            return ""
        text = "\n".join(tail_lines(self.path, lines))
        return text + "\n" if text else ""

    def new_text(self) -> str:
        """What was appended since the last call ("" if nothing, or the file is not there yet)."""
        try:
            with open(self.path, "rb") as handle:
                size = handle.seek(0, 2)
                if size < self.position:  # truncated or replaced (a requeued job's new log): from the start
                    self.position = 0
                handle.seek(self.position)
                data = handle.read(size - self.position)
        except OSError:
            return ""
        self.position += len(data)
        return data.decode(errors="replace")


def in_queue(job_id: str) -> bool:
    """Whether the live queue still holds the job (pending, running, completing)."""
    return str(job_id) in commands.squeue([job_id])


def follow(job_id: str, paths: Sequence[Path], lines: int = 40, interval_s: float = 2.0,
           write: Callable[[str], object] | None = None, still_queued: Callable[[str], bool] = in_queue) -> None:
    """Print the last ``lines`` lines of each log, then what they gain, until the job is out of the queue.

    With several files, a ``==> path <==`` header comes whenever the file printed from changes.
    """
    out = write or _stdout
    interval = max(MIN_INTERVAL_S, float(interval_s))
    tails = [Tail(p) for p in paths]
    last: Tail | None = None

    def emit(tail: Tail, text: str) -> None:
        nonlocal last
        if not text:
            return
        if len(tails) > 1 and tail is not last:
            out(f"==> {tail.path} <==\n")
        last = tail
        out(text)

    for tail in tails:
        emit(tail, tail.start(lines))
    while True:
        queued = still_queued(job_id)
        for tail in tails:
            emit(tail, tail.new_text())
        if not queued:
            return
        time.sleep(interval)


def _stdout(text: str) -> None:
    sys.stdout.write(text)
    sys.stdout.flush()


__all__ = ["MIN_INTERVAL_S", "Tail", "follow", "in_queue"]
