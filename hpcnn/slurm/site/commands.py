"""The one place that runs Slurm's commands (sbatch, sacct, squeue, scancel, scontrol, srun into a running job).

Every call has a timeout, never goes through a shell, and turns a failure into a
SubmissionError carrying argv, exit code, stdout and stderr. Status queries are batched:
one ``sacct`` for any number of jobs and array tasks, so a sweep costs one query.
"""
from __future__ import annotations

import re
import shutil
import subprocess
from dataclasses import dataclass
from typing import Iterable, Sequence

from ...errors import SubmissionError

DEFAULT_TIMEOUT_S = 60
SACCT_FIELDS = ("JobID", "State", "ExitCode", "Elapsed", "NodeList", "Submit")
FINISHED = {"COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "OUT_OF_MEMORY", "NODE_FAIL", "BOOT_FAIL", "DEADLINE",
            "PREEMPTED", "REVOKED", "SPECIAL_EXIT"}
# PREEMPTED counts as finished only when Slurm did not requeue the job; a requeued job shows REQUEUED/PENDING.
ACTIVE = {"PENDING", "RUNNING", "REQUEUED", "REQUEUE_FED", "REQUEUE_HOLD", "RESIZING", "SUSPENDED", "COMPLETING",
          "CONFIGURING", "STAGE_OUT", "SIGNALING", "RESV_DEL_HOLD", "STOPPED"}


@dataclass(frozen=True)
class JobState:
    job_id: str          # "123" or "123_4" for an array task
    state: str           # first word of Slurm's state: RUNNING, COMPLETED, CANCELLED, ...
    exit_code: str = ""  # "0:0" = exit status : signal
    elapsed: str = ""
    nodes: str = ""
    reason: str = ""

    @property
    def finished(self) -> bool:
        return self.state in FINISHED


def run(argv: Sequence[str], *, timeout: float = DEFAULT_TIMEOUT_S, what: str | None = None,
        check: bool = True) -> subprocess.CompletedProcess:
    argv = [str(a) for a in argv]
    if shutil.which(argv[0]) is None:
        raise SubmissionError(f"'{argv[0]}' not found: is this a Slurm login node?", argv, None,
                              hint="load the Slurm module, or use --dry-run / `hpcnn render` to only write the script")
    try:
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired as err:
        raise SubmissionError(f"{what or argv[0]} did not answer within {timeout:g} s", argv, None,
                              err.stdout or "", err.stderr or "", hint="is slurmctld up? try `sinfo`") from None
    if check and proc.returncode != 0:
        raise SubmissionError(what or f"{argv[0]} failed", argv, proc.returncode, proc.stdout, proc.stderr)
    return proc


def parse_job_id(text: str) -> str:
    """The id from `sbatch --parsable` ("123" or "123;cluster") or from "Submitted batch job 123"."""
    m = re.search(r"^\s*(\d+)(?:;\S+)?\s*$", text, re.M) or re.search(r"job (\d+)", text)
    if not m:
        raise SubmissionError(f"could not read a job id from sbatch's output {text.strip()!r}")
    return m.group(1)


def sbatch(script_path, *, test_only: bool = False, extra: Sequence[str] = (), timeout: float = DEFAULT_TIMEOUT_S):
    """Submit a script; returns the job id (or sbatch's message for --test-only)."""
    argv = ["sbatch", *(["--test-only"] if test_only else ["--parsable"]), *extra, str(script_path)]
    proc = run(argv, timeout=timeout, what="sbatch rejected the script")
    return (proc.stderr + proc.stdout).strip() if test_only else parse_job_id(proc.stdout)


def expand_job_ids(field: str) -> list[str]:
    """'123' -> [123]; '123_4' -> [123_4]; '123_[0-3,7%2]' -> [123_0 .. 123_3, 123_7]."""
    m = re.match(r"^(\d+)_\[([0-9,\-]+)(?:%\d+)?\]$", field)
    if not m:
        return [field]
    base, spec = m.groups()
    out = []
    for part in spec.split(","):
        lo, _, hi = part.partition("-")
        out += [f"{base}_{i}" for i in range(int(lo), int(hi or lo) + 1)]
    return out


def parse_sacct(text: str) -> dict[str, JobState]:
    """Parse `sacct -X -n -P -o JobID,State,ExitCode,Elapsed,NodeList,Submit` output (steps skipped).

    A job id can appear more than once when a cluster's job ids restarted but its accounting
    database did not: the most recently submitted record wins. Within one submission a task's
    own row wins over a range row (``123_[0-2%2] CANCELLED``, left when a pending task of a
    throttled array is cancelled), whichever comes first.
    """
    states: dict[str, JobState] = {}
    submitted: dict[str, tuple[str, bool]] = {}
    for line in text.splitlines():
        parts = line.split("|")
        if len(parts) < len(SACCT_FIELDS) or not parts[0] or "." in parts[0]:
            continue
        job_field, state, exit_code, elapsed, nodes, submit = parts[:6]
        word = state.split()[0] if state.strip() else "UNKNOWN"
        reason = state.strip() if word == "CANCELLED" else ""
        rank = (submit, "[" not in job_field)
        for job_id in expand_job_ids(job_field.strip()):
            if rank >= submitted.get(job_id, ("", False)):
                submitted[job_id] = rank
                states[job_id] = JobState(job_id, word, exit_code, elapsed, nodes, reason)
    return states


def sacct(job_ids: Iterable[str], timeout: float = DEFAULT_TIMEOUT_S) -> dict[str, JobState]:
    """One sacct call for all jobs (an array id covers all its tasks)."""
    ids = sorted({str(j).split("_")[0] for j in job_ids})
    if not ids:
        return {}
    proc = run(["sacct", "-X", "-n", "-P", "-o", ",".join(SACCT_FIELDS), "-j", ",".join(ids)], timeout=timeout,
               what="sacct failed")
    return parse_sacct(proc.stdout)


def parse_squeue(text: str) -> dict[str, JobState]:
    states = {}
    for line in text.splitlines():
        parts = line.strip().split("|")
        if len(parts) >= 3 and parts[0]:
            for job_id in expand_job_ids(parts[0]):
                states[job_id] = JobState(job_id, parts[1], nodes=parts[3] if len(parts) > 3 else "",
                                          reason=parts[2] if parts[2] not in ("None", "") else "")
    return states


def squeue(job_ids: Iterable[str], timeout: float = DEFAULT_TIMEOUT_S) -> dict[str, JobState]:
    """Queued and running jobs only (no accounting needed); finished jobs are simply absent."""
    ids = sorted({str(j).split("_")[0] for j in job_ids})
    if not ids:
        return {}
    proc = run(["squeue", "-h", "-r", "-o", "%i|%T|%r|%N", "-j", ",".join(ids)], timeout=timeout, check=False)
    if proc.returncode != 0 and "Invalid job id" not in proc.stderr:
        raise SubmissionError("squeue failed", proc.args, proc.returncode, proc.stdout, proc.stderr)
    return parse_squeue(proc.stdout)


def query_states(job_ids: Iterable[str]) -> dict[str, JobState]:
    """sacct when accounting works (it knows finished jobs), else squeue."""
    job_ids = list(job_ids)
    try:
        return sacct(job_ids)
    except SubmissionError as err:
        if err.returncode is None and "not found" in err.what and "sacct" in err.what:
            raise
        return squeue(job_ids)


def scancel(job_ids: Iterable[str], *, signal: str | None = None, batch: bool = False,
            timeout: float = DEFAULT_TIMEOUT_S) -> None:
    ids = [str(j) for j in job_ids]
    if not ids:
        return
    argv = ["scancel", *([f"--signal={signal}"] if signal else []), *(["--batch"] if batch else []), *ids]
    run(argv, timeout=timeout, what="scancel failed")


def requeue(job_id: str, timeout: float = DEFAULT_TIMEOUT_S) -> None:
    run(["scontrol", "requeue", str(job_id)], timeout=timeout, what="scontrol requeue failed")


def srun_overlap(job_id: str, nodes: int, argv: Sequence[str], timeout: float = 30) -> subprocess.CompletedProcess:
    """Run ``argv`` once on each of a running job's nodes, inside its allocation, beside its own steps.

    ``--overlap`` shares the job's CPUs, memory and GPUs instead of waiting for free ones (what
    `hpcnn top` needs: a one-shot sampler next to the training). Output comes back as text.
    """
    return run(["srun", f"--jobid={job_id}", "--overlap", f"--nodes={nodes}", f"--ntasks={nodes}",
                "--ntasks-per-node=1", "--quiet", *argv], timeout=timeout, what=f"srun into job {job_id} failed")


def show_job(job_id: str, timeout: float = DEFAULT_TIMEOUT_S) -> dict[str, str]:
    """`scontrol show job -o ID` as a dict (only while slurmctld still remembers the job)."""
    proc = run(["scontrol", "show", "job", "-o", str(job_id)], timeout=timeout, check=False)
    if proc.returncode != 0:
        return {}
    return {key: value for key, sep, value in (token.partition("=") for token in proc.stdout.split()) if sep}


__all__ = ["ACTIVE", "FINISHED", "JobState", "expand_job_ids", "parse_job_id", "parse_sacct", "parse_squeue",
           "query_states", "requeue", "run", "sacct", "sbatch", "scancel", "show_job", "squeue", "srun_overlap"]
