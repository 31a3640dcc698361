"""One job at a time in a run directory (hpcnn/rundir_lock.py), with real processes holding and dying."""
from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import time

import pytest

from hpcnn.errors import RunDirBusy
from hpcnn.rundir_lock import LOCK_NAME, STALE_AFTER_S, RunDirLock, hold_run_dir, read_holder
from tests.helpers import PYTHON, REPO

# holds the lock of argv[1] (as the Slurm job its environment names) until stdin closes, then says whether the
# lock was still its own and releases it; a refused one prints the one-line error
HOLDER = """
import sys
from hpcnn.env import job_info
from hpcnn.errors import RunDirBusy
from hpcnn.rundir_lock import RunDirLock
try:
    lock = RunDirLock.acquire(sys.argv[1], job_info())
except RunDirBusy as err:
    print("busy:", err, flush=True)
    raise SystemExit(2)
print("held", flush=True)
sys.stdin.read()
print("still mine:", lock.beat(), flush=True)
lock.release()
"""
NO_SLURM = {k: v for k, v in os.environ.items() if not k.startswith("SLURM_")}


def start_holder(run_dir, **env) -> subprocess.Popen:
    proc = subprocess.Popen([PYTHON, "-c", HOLDER, str(run_dir)], cwd=REPO, env={**NO_SLURM, **env}, text=True,
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert proc.stdout.readline().strip() == "held"  # it holds the lock from here on
    return proc


def try_once(run_dir, **env) -> subprocess.CompletedProcess:
    return subprocess.run([PYTHON, "-c", HOLDER, str(run_dir)], cwd=REPO, env={**NO_SLURM, **env}, text=True,
                          input="", capture_output=True, timeout=60)


def finish(proc: subprocess.Popen) -> str:
    out, err = proc.communicate(input="", timeout=60)
    return out + err


def test_a_second_process_is_refused_and_a_dead_holder_does_not_keep_the_lock(tmp_path):
    first = start_holder(tmp_path)
    try:
        second = try_once(tmp_path)
        assert second.returncode == 2
        line = second.stdout.strip()
        assert line.startswith(f"busy: the run directory is in use by another job: host {socket.gethostname()}, "
                               f"pid {first.pid}, since ") and "\n" not in line and f"({tmp_path})" in line
        assert f"kill {first.pid} on" in line
    finally:
        first.send_signal(signal.SIGKILL)  # dies without releasing: the file stays
        os.waitid(os.P_PID, first.pid, os.WEXITED | os.WNOWAIT)  # dead, not reaped: a zombie holds the pid
    assert read_holder(tmp_path / LOCK_NAME).pid == first.pid
    third = try_once(tmp_path)
    first.wait(timeout=30)
    assert third.returncode == 0 and "still mine: True" in third.stdout, third.stdout + third.stderr
    assert f"took over the lock of {tmp_path}: process {first.pid} on {socket.gethostname()} is gone" in third.stderr
    assert not (tmp_path / LOCK_NAME).exists()  # released on the way out


def test_a_requeued_slurm_job_takes_over_its_own_lock_but_not_another_jobs(tmp_path):
    first = start_holder(tmp_path, SLURM_JOB_ID="77", SLURM_RESTART_COUNT="0")
    try:
        other = try_once(tmp_path, SLURM_JOB_ID="78")
        assert other.returncode == 2 and "Slurm job 77" in other.stdout and "scancel 77" in other.stdout
        same = try_once(tmp_path, SLURM_JOB_ID="77", SLURM_RESTART_COUNT="0")  # not a requeue: the same run
        assert same.returncode == 2
        requeued = start_holder(tmp_path, SLURM_JOB_ID="77", SLURM_RESTART_COUNT="1")
        assert read_holder(tmp_path / LOCK_NAME).restart == 1
    finally:
        out = finish(first)
    assert "still mine: False" in out and "lost the lock" in out  # the old run learns it, and leaves the lock be
    assert read_holder(tmp_path / LOCK_NAME).pid == requeued.pid
    assert "still mine: True" in finish(requeued) and not (tmp_path / LOCK_NAME).exists()


def _foreign_lock(run_dir, age_s: float) -> None:
    lock = run_dir / LOCK_NAME
    lock.write_text(json.dumps({"host": "n7-elsewhere", "pid": 4242, "started": None, "job_id": "900_3",
                                "raw_job_id": "903", "restart": 0, "since": time.time() - age_s, "token": "t" * 16}))
    os.utime(lock, (time.time() - age_s, time.time() - age_s))


def test_another_nodes_lock_holds_while_its_heartbeat_is_fresh_and_is_taken_when_it_stops(tmp_path):
    _foreign_lock(tmp_path, age_s=60)
    with pytest.raises(RunDirBusy, match=r"host n7-elsewhere, pid 4242, Slurm job 900_3, since .* last heartbeat "
                                         r"6\d s ago .* scancel 900_3"):
        RunDirLock.acquire(tmp_path)
    _foreign_lock(tmp_path, age_s=STALE_AFTER_S + 60)  # its node died: no heartbeat for longer than the timeout
    with hold_run_dir(tmp_path) as lock:
        assert read_holder(tmp_path / LOCK_NAME) == lock.holder and lock.holder.pid == os.getpid()
    assert not (tmp_path / LOCK_NAME).exists()


def test_the_heartbeat_refreshes_the_lock_and_release_leaves_anothers_lock_alone(tmp_path):
    lock = RunDirLock.acquire(tmp_path)
    path = tmp_path / LOCK_NAME
    os.utime(path, (time.time() - 1000, time.time() - 1000))
    assert lock.beat() and time.time() - path.stat().st_mtime < 100
    with pytest.raises(RunDirBusy):  # this process's own lock is never taken for a dead one
        RunDirLock.acquire(tmp_path)
    _foreign_lock(tmp_path, age_s=0)  # someone else's now (deleted by hand and taken, say)
    assert not lock.beat() and lock.lost
    lock.release()
    assert read_holder(path).host == "n7-elsewhere"


def test_the_lock_and_the_input_checks_import_without_torch():
    code = ("import sys; sys.modules['torch'] = None; import hpcnn.rundir_lock, hpcnn.regular_files, hpcnn.files, "
            "hpcnn.predict.listing")
    proc = subprocess.run([PYTHON, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
