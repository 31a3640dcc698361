"""The Slurm layer's runtime pieces without a cluster: command parsing (canned output keyed by exact
argv), the payload's requeue rule, status derivation and job records."""
from __future__ import annotations

import json
import pickle
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

from hpcnn import files
from hpcnn.errors import HpcnnError, SubmissionError
from hpcnn.slurm.jobs import handles as jobs, payload, records
from hpcnn.slurm.jobs.status import make_status
from hpcnn.slurm.site import commands
from hpcnn.slurm.site.commands import JobState

SACCT_ARGV = ["sacct", "-X", "-n", "-P", "-o", "JobID,State,ExitCode,Elapsed,NodeList,Submit", "-j", "101,205"]
SACCT_OUT = """101|COMPLETED|0:0|00:00:12|n1|2026-11-23T10:00:05
101|FAILED|1:0|00:00:02|n2|2026-11-20T09:00:00
205_0|COMPLETED|0:0|00:00:09|n2|2026-11-23T10:01:00
205_1|FAILED|1:0|00:00:03|n3|2026-11-23T10:01:00
205_2|CANCELLED by 0|0:15|00:00:01|n1|2026-11-23T10:01:00
205_[3-5,7%2]|PENDING|0:0|00:00:00|None assigned|2026-11-23T10:01:00
205_1.batch|FAILED|1:0|00:00:03|n3|2026-11-23T10:01:00
"""


@pytest.fixture
def fake_slurm(monkeypatch):
    """subprocess.run answering exact argv lists; records every call."""
    answers, seen = {}, []

    def run(argv, **kwargs):
        seen.append(list(argv))
        out, err, rc = answers.get(tuple(argv), ("", f"unexpected argv {argv}", 1))
        return subprocess.CompletedProcess(argv, rc, out, err)

    monkeypatch.setattr(commands.shutil, "which", lambda name: f"/usr/bin/{name}")
    monkeypatch.setattr(commands.subprocess, "run", run)
    return SimpleNamespace(answers=answers, seen=seen)


def test_one_sacct_call_for_many_jobs_and_array_ranges(fake_slurm):
    fake_slurm.answers[tuple(SACCT_ARGV)] = (SACCT_OUT, "", 0)
    states = commands.sacct(["205_1", "101", "205"])
    assert fake_slurm.seen == [SACCT_ARGV]
    assert states["101"].state == "COMPLETED", "an older job with a reused id must not win"
    assert states["205_1"].exit_code == "1:0"
    assert states["205_2"].state == "CANCELLED" and states["205_2"].reason == "CANCELLED by 0"
    assert [states[f"205_{i}"].state for i in (3, 4, 5, 7)] == ["PENDING"] * 4
    assert "205_6" not in states and not any("." in k for k in states)


def test_sacct_failure_falls_back_to_squeue(fake_slurm):
    fake_slurm.answers[tuple(SACCT_ARGV[:-1] + ["9"])] = ("", "Slurm accounting storage is disabled", 1)
    fake_slurm.answers[("squeue", "-h", "-r", "-o", "%i|%T|%r|%N", "-j", "9")] = ("9_0|RUNNING|None|n1\n"
                                                                                "9_1|PENDING|Resources|\n", "", 0)
    states = commands.query_states(["9_0"])
    assert states["9_0"].state == "RUNNING" and states["9_1"].reason == "Resources"


def test_command_failure_carries_argv_and_stderr(fake_slurm):
    with pytest.raises(SubmissionError) as err:
        commands.scancel(["77"])
    assert err.value.argv == ["scancel", "77"] and err.value.returncode == 1 and "unexpected argv" in err.value.stderr


def test_missing_command_says_so(monkeypatch):
    monkeypatch.setattr(commands.shutil, "which", lambda name: None)
    with pytest.raises(SubmissionError, match="'sbatch' not found"):
        commands.sbatch("job.sh")


@pytest.mark.parametrize("text, job_id", [("1234\n", "1234"), ("1234;cluster\n", "1234"),
                                          ("Submitted batch job 99\n", "99")])
def test_parse_job_id(text, job_id):
    assert commands.parse_job_id(text) == job_id


def test_parse_job_id_rejects_garbage():
    with pytest.raises(SubmissionError):
        commands.parse_job_id("sbatch: error: Batch job submission failed")


# ---------------------------------------------------------------- payload


class Runner:
    """scontrol stand-in: `show job` reports ``state``; `requeue` exits ``rc``."""

    def __init__(self, rc=0, state="RUNNING"):
        self.calls, self.rc, self.state = [], rc, state

    def __call__(self, argv, **kwargs):
        self.calls.append(argv)
        if argv[:2] == ["scontrol", "show"]:
            shown = f"JobId={argv[-1]} JobName=x JobState={self.state} Reason=None"
            return subprocess.CompletedProcess(argv, 0, shown, "")
        return subprocess.CompletedProcess(argv, self.rc, "", "boom" if self.rc else "")


SHOW = ["scontrol", "show", "job", "-o", "555"]


def use(monkeypatch, runner: Runner) -> Runner:
    """Every Slurm command goes through hpcnn.slurm.site.commands: answer its subprocess calls."""
    monkeypatch.setattr(commands.shutil, "which", lambda name: f"/usr/bin/{name}")
    monkeypatch.setattr(commands.subprocess, "run", runner)
    return runner


@pytest.mark.parametrize("restarts, max_requeues, expected", [("0", 3, True), ("2", 3, True), ("3", 3, False),
                                                              ("0", 0, False)])
def test_requeue_is_bounded(monkeypatch, restarts, max_requeues, expected):
    monkeypatch.setenv("SLURM_JOB_ID", "555")
    monkeypatch.setenv("SLURM_RESTART_COUNT", restarts)
    runner = use(monkeypatch, Runner())
    assert payload.requeue_self(max_requeues) is expected
    assert runner.calls == ([SHOW, ["scontrol", "requeue", "555"]] if expected else [])


@pytest.mark.parametrize("state", ["CANCELLED", "COMPLETING", "PREEMPTED", "REQUEUED"])
def test_a_cancelled_job_is_never_requeued(monkeypatch, state):
    """scancel stops the trainer with SIGTERM, which checkpoints like a preemption: it must not requeue."""
    monkeypatch.setenv("SLURM_JOB_ID", "555")
    monkeypatch.delenv("SLURM_RESTART_COUNT", raising=False)
    runner = use(monkeypatch, Runner(state=state))
    assert payload.requeue_self(3) is False and runner.calls == [SHOW]


def test_failed_requeue_is_reported_not_hidden(monkeypatch):
    monkeypatch.setenv("SLURM_JOB_ID", "555")
    monkeypatch.delenv("SLURM_RESTART_COUNT", raising=False)
    use(monkeypatch, Runner(rc=1))
    assert payload.requeue_self(3) is False


def test_scontrol_trouble_is_one_log_line_not_a_crash(monkeypatch, caplog):
    """The requeue rule is best effort: the checkpoint is on disk whatever scontrol does."""
    monkeypatch.setenv("SLURM_JOB_ID", "555")
    monkeypatch.delenv("SLURM_RESTART_COUNT", raising=False)
    monkeypatch.setattr(commands.shutil, "which", lambda name: None)  # no scontrol on this node
    with caplog.at_level("WARNING", logger="hpcnn.slurm"):
        assert payload.requeue_self(3) is False
    assert any("'scontrol' not found" in r.getMessage() for r in caplog.records)
    use(monkeypatch, Runner(rc=1))
    caplog.clear()
    with caplog.at_level("WARNING", logger="hpcnn.slurm"):
        assert payload.requeue_self(3) is False
    failed = [r.getMessage() for r in caplog.records if r.levelname == "ERROR"]
    assert len(failed) == 1 and "requeueing job 555 failed" in failed[0] and "\n" not in failed[0]


def stub_trainer(monkeypatch, status):
    import hpcnn.run

    seen = {}

    def run_from_dict(config, run_dir, resume="auto"):
        seen.update(config=config, run_dir=run_dir, resume=resume)
        return SimpleNamespace(status=status, run_dir=Path(run_dir), summary={"status": status})

    monkeypatch.setattr(hpcnn.run, "run_from_dict", run_from_dict)
    return seen


def test_payload_trains_with_resume_auto_and_returns_the_summary(monkeypatch, tmp_path):
    seen = stub_trainer(monkeypatch, "completed")
    result = payload.TrainPayload({"name": "x", "slurm": {"max_requeues": 2}}, str(tmp_path / "run"))()
    assert result == {"status": "completed"} and seen["resume"] == "auto"
    assert seen["run_dir"] == str(tmp_path / "run") and (tmp_path / "run").is_dir()


def test_preempted_payload_requeues_and_leaves_without_a_result(monkeypatch, tmp_path):
    stub_trainer(monkeypatch, "preempted")
    calls = []
    monkeypatch.setattr(payload, "requeue_self", lambda n, runner=None: calls.append(n) or True)
    monkeypatch.setenv("SLURM_PROCID", "0")
    with pytest.raises(SystemExit) as exit_info:
        payload.TrainPayload({"slurm": {"max_requeues": 2}}, str(tmp_path))()
    assert exit_info.value.code == payload.EXIT_PREEMPTED and calls == [2]


def test_other_ranks_leave_without_requeueing(monkeypatch, tmp_path):
    stub_trainer(monkeypatch, "preempted")
    monkeypatch.setattr(payload, "requeue_self", lambda *a, **k: pytest.fail("only rank 0 requeues"))
    monkeypatch.setenv("SLURM_PROCID", "1")
    monkeypatch.setenv("SLURM_RESTART_COUNT", "0")
    with pytest.raises(SystemExit):
        payload.TrainPayload({"slurm": {"max_requeues": 2}}, str(tmp_path))()


def test_out_of_requeues_reports_the_preempted_summary(monkeypatch, tmp_path):
    stub_trainer(monkeypatch, "preempted")
    monkeypatch.setenv("SLURM_PROCID", "0")
    monkeypatch.setenv("SLURM_JOB_ID", "1")
    monkeypatch.setenv("SLURM_RESTART_COUNT", "2")
    assert payload.TrainPayload({"slurm": {"max_requeues": 2}}, str(tmp_path))() == {"status": "preempted"}


def test_payload_checkpoint_resubmits_the_same_data():
    p = payload.TrainPayload({"name": "x"}, "/runs/a")
    delayed = p.checkpoint()
    assert delayed.function == p and delayed.function is not p and delayed.args == ()


def test_payload_pickles_without_torch():
    blob = pickle.dumps(payload.TrainPayload({"name": "x"}, "/r"))
    code = ("import sys, pickle; sys.modules['torch'] = None; "
            f"p = pickle.loads({blob!r}); print(p.run_dir)")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0 and proc.stdout.strip() == "/r", proc.stderr


# ---------------------------------------------------------------- status and records


def test_status_combines_slurm_state_and_run_directory(tmp_path):
    (tmp_path / "summary.json").write_text(json.dumps({"status": "completed", "metrics": {"val": {"accuracy": 0.9}}}))
    done = make_status("5", tmp_path, JobState("5", "COMPLETED", "0:0"), tmp_path / "none.err")
    assert done.finished and done.succeeded and done.metric("val.accuracy") == 0.9 and not done.reason
    log = tmp_path / "5_0_log.err"
    log.write_text("Traceback (most recent call last):\n  File x\nValueError: data.root is empty\nsrun: error: n1\n")
    failed = make_status("6", tmp_path / "other", JobState("6", "FAILED", "1:0"), log)
    assert failed.finished and not failed.succeeded
    assert failed.reason == "FAILED (exit 1:0): ValueError: data.root is empty"
    unknown = make_status("7", tmp_path, None, log)  # accounting lost the job, the run finished
    assert unknown.state == "COMPLETED" and unknown.finished
    running = make_status("8", tmp_path / "x", JobState("8", "RUNNING"), log)
    assert not running.finished


def test_records_and_lookup(tmp_path, monkeypatch):
    monkeypatch.setenv("HPCNN_STATE_DIR", str(tmp_path / "state"))
    run_dir = files.new_run_dir(tmp_path / "runs", "my job/../x")
    assert run_dir.parent == tmp_path / "runs" and "/" not in run_dir.name and run_dir.name.startswith("my_job")
    pattern = str(run_dir / "{job_id}_{rank}.{stream}")
    files.atomic_write_json(run_dir / records.JOB_FILE, {"job_id": "42", "log_pattern": pattern})
    records.register("42", run_dir)
    handle = jobs.locate("42")
    assert isinstance(handle, jobs.JobHandle) and handle.run_dir == run_dir
    assert handle.log_path(1, "err") == run_dir / "42_1.err"
    assert records.recent()[0] == ("42", run_dir)
    with pytest.raises(HpcnnError, match="no record"):
        jobs.locate("43")
    with pytest.raises(HpcnnError, match="no such run directory"):
        jobs.locate("not-a-dir")


def test_sweep_records_resolve_task_ids(tmp_path, monkeypatch):
    monkeypatch.setenv("HPCNN_STATE_DIR", str(tmp_path / "state"))
    record = {"name": "s", "arrays": [{"job_id": "70", "offset": 0, "count": 2}, {"job_id": "71", "offset": 2,
                                                                                  "count": 1}],
              "tasks": [{"index": i, "job_id": jid, "run_dir": f"task-{i:03d}", "overrides": [f"optim.lr={i}"]}
                        for i, jid in enumerate(["70_0", "70_1", "71_0"])]}
    files.atomic_write_json(tmp_path / records.SWEEP_FILE, record)
    records.register("70", tmp_path)
    records.register("71", tmp_path)
    sweep = jobs.locate("70")
    assert isinstance(sweep, jobs.JobArray) and len(sweep) == 3 and sweep.array_ids == ["70", "71"]
    task = jobs.locate("71_0")
    assert task.run_dir == tmp_path / "task-002" and task.record["overrides"] == ["optim.lr=2"]
    assert task.log_path(0) == tmp_path / "submitit" / "71_0_0_log.out"
