"""Helpers shared by the Slurm-layer tests (submit, arrays, requeue, hostile names, rendering)."""
from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path

import pytest

from tests.helpers import PYTHON, REPO, TINY

POLL_MAX_S = 3.0  # tests poll a little more often than users (default cap 30 s) to end soon after the job
JOB_TIMEOUT_S = 240  # one tiny training job, queued on a 2-core machine shared with other tests
# Job ids restart when the test cluster's state is reset while its accounting database is kept:
# rows submitted before this test session are someone else's job with the same id.
SESSION_START = time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(time.time() - 5))


@pytest.fixture
def state_dir(tmp_path, monkeypatch):
    """Job records of this test only (and inherited by the CLI subprocesses it starts)."""
    path = tmp_path / "state"
    monkeypatch.setenv("HPCNN_STATE_DIR", str(path))
    return path


def tiny(tmp_path, *more: str) -> list[str]:
    return [*TINY, f"train.runs_dir={tmp_path / 'runs'}", "monitor.enabled=false", *more]


def hpcnn(*args, timeout: float = 120, check: bool = True) -> subprocess.CompletedProcess:
    """The CLI in a NEW process, as a user in another shell would run it."""
    proc = subprocess.run([PYTHON, "-m", "hpcnn", *map(str, args)], capture_output=True, text=True, timeout=timeout,
                          cwd=REPO, env=dict(os.environ))
    if check and proc.returncode != 0:
        raise AssertionError(f"hpcnn {' '.join(map(str, args))} exited {proc.returncode}\n{proc.stdout}\n{proc.stderr}")
    return proc


def hpcnn_json(*args, timeout: float = 120):
    return json.loads(hpcnn(*args, "--json", timeout=timeout).stdout)


def sacct_rows(cluster, job_id: str, duplicates: bool = False) -> list[dict]:
    """Allocation rows of one job or array (JobID, JobName, State, ExitCode) submitted in this session."""
    argv = ["sacct", "-X", "-n", "-P", "-o", "Submit,JobID,JobName%300,State,ExitCode", "-j", str(job_id)]
    if duplicates:
        argv.insert(1, "-D")
    out = cluster.run(argv, timeout=30).stdout
    rows = []
    for line in out.splitlines():
        submit, job, name, state, code = line.split("|")[:5]
        if submit < SESSION_START:
            continue
        rows.append({"JobID": job, "JobName": name, "State": state.split()[0] if state else "", "ExitCode": code})
    return rows


def wait_until(predicate, timeout_s: float, what: str, poll_s: float = 0.5):
    """Poll ``predicate()`` until it returns something truthy; fail after ``timeout_s`` of wall time."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s:g} s waiting for {what}")
        time.sleep(poll_s)


def wait_finished(cluster, job_id: str, timeout_s: float = JOB_TIMEOUT_S) -> dict:
    """The final sacct row of a (non-array) job; bounded by wall time."""
    finished = {"COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "OUT_OF_MEMORY", "NODE_FAIL"}

    def done():
        rows = sacct_rows(cluster, job_id)
        return rows[0] if rows and rows[0]["State"] in finished else None

    return wait_until(done, timeout_s, f"job {job_id} to finish", poll_s=1.0)


def read_summary(run_dir: Path) -> dict:
    return json.loads((Path(run_dir) / "summary.json").read_text())


def controller_job_name(cluster, job_id: str) -> str:
    """The job name exactly as slurmctld holds it (accounting stores '"' as a backtick, so not sacct)."""
    first = cluster.run(["scontrol", "show", "job", str(job_id)], timeout=30).stdout.split("\n", 1)[0]
    assert first.startswith(f"JobId={job_id} JobName="), first
    return first.split(" JobName=", 1)[1]


def steps_finished(cluster, job_id: str) -> bool:
    """Every step of the job (batch, extern, srun steps) has ended: no process of it is left to act."""
    out = cluster.run(["sacct", "-n", "-P", "-o", "Submit,JobID,State", "-j", str(job_id)], timeout=30).stdout
    steps = [line.split("|") for line in out.splitlines()]
    steps = [s for s in steps if s[0] >= SESSION_START and s[1].startswith(f"{job_id}.")]
    return bool(steps) and all(s[2].split()[0] not in ("RUNNING", "PENDING", "COMPLETING") for s in steps)
