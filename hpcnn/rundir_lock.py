"""One job at a time in a run directory: RUN_DIR/.hpcnn-lock, which a dead holder does not keep.

Two jobs writing one run directory (a double submission; a requeued job and a manual ``--resume``)
would interleave checkpoints, metrics and the summary. The lock is a file created with
O_CREAT|O_EXCL — atomic on local file systems and on NFS (v3+) alike, where fcntl/flock locks are
not always honoured — holding who holds it: host, pid and the process's start time, Slurm job id
and restart count, since when, and a random token. The holder's thread refreshes the file's mtime
every ``HEARTBEAT_S`` (the heartbeat). Another job reads the file and takes the lock over only when
the holder is gone:

* same host, and the pid is dead or now another process (its start time differs);
* the same Slurm job requeued: same job id, higher restart count (the old run cannot be running);
* another host, and the heartbeat is older than ``STALE_AFTER_S`` (its node died or lost the file system).

Otherwise it raises ``RunDirBusy`` naming the holder. A stale lock is renamed away before the new one
is created (a rename has one winner; the loser checks what it renamed and puts back a lock that was
not the stale one). Stdlib only: no torch.
"""
from __future__ import annotations

import contextlib
import json
import logging
import os
import secrets
import socket
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Iterator

from .errors import RunDirBusy

log = logging.getLogger("hpcnn")

LOCK_NAME = ".hpcnn-lock"
HEARTBEAT_S = 30.0
STALE_AFTER_S = 300.0   # ten missed heartbeats: NFS attribute caches (up to 60 s) and clock skew stay far below
_HELD: set[str] = set()  # tokens held by this process: its own lock is never taken for a dead one


@dataclass(frozen=True)
class Holder:
    host: str
    pid: int
    started: int | None        # the process's start time (clock ticks since boot, Linux), to tell a reused pid
    job_id: str | None         # what users type: 123 or 123_4
    raw_job_id: str | None     # SLURM_JOB_ID: the same across requeues of one job
    restart: int               # SLURM_RESTART_COUNT
    since: float               # epoch seconds
    token: str

    def describe(self) -> str:
        who = f"host {self.host}, pid {self.pid}"
        if self.job_id:
            who += f", Slurm job {self.job_id}" + (f" (restart {self.restart})" if self.restart else "")
        return who + ", since " + time.strftime("%Y-%m-%d %H:%M:%S %Z", time.localtime(self.since))


def _proc_stat(pid: int) -> list[bytes] | None:
    """/proc/PID/stat's fields after the command name (state first); None where there is no /proc."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            return f.read().rsplit(b")", 1)[1].split()
    except (OSError, IndexError):
        return None


def process_start(pid: int) -> int | None:
    """Start time of ``pid`` in clock ticks since boot (/proc/PID/stat field 22); None where unknown."""
    fields = _proc_stat(pid)
    try:
        return int(fields[19]) if fields else None
    except (IndexError, ValueError):
        return None


def _alive(pid: int, started: int | None) -> bool:
    """The pid runs, and is the process that took the lock (a zombie or a reused pid is not)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process: alive
        pass
    fields = _proc_stat(pid)
    if fields and fields[0] in (b"Z", b"X"):  # killed, not yet reaped by its parent
        return False
    now = process_start(pid)
    return started is None or now is None or now == started


def me(job=None) -> Holder:
    """This process as a holder; ``job``: an ``env.JobInfo`` (job ids, restart count) or None."""
    pid = os.getpid()
    return Holder(socket.gethostname(), pid, process_start(pid), getattr(job, "job_id", None),
                  getattr(job, "raw_job_id", None), int(getattr(job, "restart_count", 0) or 0), time.time(),
                  secrets.token_hex(8))


def read_holder(path: Path) -> Holder | None:
    """The holder written in a lock file; None while it is being written (or unreadable)."""
    try:
        return Holder(**json.loads(path.read_text()))
    except (OSError, ValueError, TypeError):
        return None


def heartbeat_age(path: Path) -> float | None:
    try:
        return max(0.0, time.time() - path.stat().st_mtime)
    except FileNotFoundError:
        return None


def stale_reason(holder: Holder | None, age: float, mine: Holder, stale_after_s: float = STALE_AFTER_S) -> str | None:
    """Why the lock of ``holder`` (heartbeat ``age`` s ago) may be taken by ``mine``; None while it holds."""
    if holder is None:
        return f"an unfinished lock file, {age:.0f} s old" if age > stale_after_s else None
    if holder.token in _HELD:
        return None
    if holder.raw_job_id and holder.raw_job_id == mine.raw_job_id and mine.restart > holder.restart:
        return f"Slurm requeued job {holder.job_id} (restart {holder.restart} -> {mine.restart})"
    if holder.host == mine.host:
        return None if _alive(holder.pid, holder.started) else f"process {holder.pid} on {holder.host} is gone"
    if age > stale_after_s:
        return f"no heartbeat from {holder.host} for {age:.0f} s"
    return None


class RunDirLock:
    """A held lock: ``beat()`` refreshes it (a thread does, every ``heartbeat_s``), ``release()`` ends it."""

    def __init__(self, path: Path, holder: Holder, heartbeat_s: float = HEARTBEAT_S):
        self.path, self.holder, self.heartbeat_s = path, holder, heartbeat_s
        self.lost = False
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._beat_until_released, name="hpcnn-rundir-lock", daemon=True)

    @classmethod
    def acquire(cls, run_dir: str | os.PathLike, job=None, heartbeat_s: float = HEARTBEAT_S,
                stale_after_s: float = STALE_AFTER_S) -> "RunDirLock":
        """Take the lock of ``run_dir`` (which must exist) or raise ``RunDirBusy`` naming its holder."""
        path = Path(run_dir) / LOCK_NAME
        mine = me(job)
        for _ in range(8):  # each turn: create, or judge the holder, or break a stale lock and retry
            if _create(path, mine):
                _HELD.add(mine.token)
                return cls(path, mine, heartbeat_s)
            holder, age = read_holder(path), heartbeat_age(path)
            if age is None:
                continue  # released meanwhile
            reason = stale_reason(holder, age, mine, stale_after_s)
            if reason is None:
                raise _busy(path, holder, age, stale_after_s)
            if _break(path, holder):
                log.warning("took over the lock of %s: %s", path.parent, reason)
        raise RunDirBusy("the run directory's lock keeps changing hands", str(path),
                         "another job is starting in it right now: let one of them run")

    def start(self) -> "RunDirLock":
        self._thread.start()
        return self

    def beat(self) -> bool:
        """Refresh the heartbeat if the lock is still ours; False (and ``lost``) if another job took it."""
        holder = read_holder(self.path)
        if holder is None or holder.token != self.holder.token:
            if not self.lost:
                log.error("lost the lock of run directory %s%s: another job may be writing it", self.path.parent,
                          f" to {holder.describe()}" if holder else "")
            self.lost = True
            return False
        os.utime(self.path)
        return True

    def _beat_until_released(self) -> None:
        while not self._stop.wait(self.heartbeat_s):
            try:
                if not self.beat():
                    return
            except OSError as err:  # a file-system hiccup: the next beat tries again
                log.warning("could not refresh the lock of %s: %s", self.path.parent, err)

    def release(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=10)
        _HELD.discard(self.holder.token)
        holder = read_holder(self.path)
        if holder is not None and holder.token == self.holder.token:
            self.path.unlink(missing_ok=True)


def _create(path: Path, mine: Holder) -> bool:
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    except FileExistsError:
        return False
    with os.fdopen(fd, "w") as f:
        f.write(json.dumps(asdict(mine)) + "\n")
        f.flush()
        os.fsync(f.fileno())
    return True


def _break(path: Path, judged: Holder | None) -> bool:
    """Move a stale lock out of the way; put it back if what moved was not the lock judged stale."""
    aside = path.with_name(f"{LOCK_NAME}.stale-{secrets.token_hex(4)}")
    try:
        os.rename(path, aside)
    except FileNotFoundError:
        return False  # someone else broke it first
    moved = read_holder(aside)
    judged_it = (moved.token if moved else None) == (judged.token if judged else None)
    if not judged_it:
        with contextlib.suppress(FileExistsError):
            os.link(aside, path)  # a fresh lock taken meanwhile: restore it
    aside.unlink(missing_ok=True)
    return judged_it


def _busy(path: Path, holder: Holder | None, age: float, stale_after_s: float) -> RunDirBusy:
    if holder is None:
        return RunDirBusy("another job is taking this run directory right now", str(path.parent),
                          "let that job run; resume later")
    stop = f"scancel {holder.job_id}" if holder.job_id else f"kill {holder.pid} on {holder.host}"
    return RunDirBusy(f"the run directory is in use by another job: {holder.describe()}, last heartbeat "
                      f"{age:.0f} s ago", str(path.parent),
                      f"wait for it to end (or stop it: {stop}); a holder on another node that died is taken over "
                      f"{stale_after_s:.0f} s after its last heartbeat, or delete {path} if you are sure it is gone")


@contextlib.contextmanager
def hold_run_dir(run_dir: str | os.PathLike, job=None, heartbeat_s: float = HEARTBEAT_S) -> Iterator[RunDirLock]:
    """The run directory's lock for the duration, with its heartbeat thread; released on the way out."""
    lock = RunDirLock.acquire(run_dir, job, heartbeat_s).start()
    try:
        yield lock
    finally:
        lock.release()


__all__ = ["HEARTBEAT_S", "Holder", "LOCK_NAME", "RunDirLock", "STALE_AFTER_S", "hold_run_dir", "read_holder",
           "stale_reason"]
