"""Tuning workers as real processes on one search directory (no Slurm here: tests/slurm/test_tune.py has it).

Two workers pull trials from the journal at once, prune, and never share a trial; a worker
SIGKILLed mid-trial has that trial retried by another worker from its checkpoint (preemption and
requeue: tests/slurm/test_tune.py). Tiny digits trials, bounded in epochs.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from hpcnn.tune.spec import read_record, search_from_dict
from hpcnn.tune.study import read_study
from hpcnn.tune.submit import prepare
from hpcnn.tune.trials import HEARTBEAT

from tests.helpers import PYTHON, REPO, TINY

WORKER_TIMEOUT_S = 300


def make_search(root, trials: int, epochs: int, pruner: str = "asha", extra: list | None = None, **space):
    data = {"name": "t", "overrides": TINY + [f"train.runs_dir={root / 'runs'}", f"train.epochs={epochs}",
                                              "monitor.enabled=false", *(extra or [])],
            "space": space or {"optim.lr": {"type": "float", "low": 1e-4, "high": 0.1, "log": True},
                               "train.batch_size": {"type": "categorical", "choices": [32, 64]}},
            "budget": {"trials": trials}, "sampler": {"name": "random", "seed": 0},
            "pruner": {"name": pruner, **({"min_epochs": 1, "reduction_factor": 3} if pruner == "asha" else {})}}
    search = search_from_dict(data, "test search")
    search_dir = root / "search"
    prepare(search, search_dir)
    return search_dir


def worker(search_dir, worker_id: str, log) -> subprocess.Popen:
    return subprocess.Popen([PYTHON, "-m", "hpcnn.tune.worker", str(search_dir), "--worker-id", worker_id],
                            cwd=REPO, stdout=log, stderr=subprocess.STDOUT, env={**os.environ, "PYTHONUNBUFFERED": "1"})


def wait_for(predicate, proc, what: str):
    """Poll until ``predicate()``; the worker ending first fails the test (no wall-clock bound on work)."""
    while not predicate():
        if proc.poll() is not None:
            raise AssertionError(f"worker ended ({proc.returncode}) before {what}")
        time.sleep(0.05)


def trials_of(search_dir):
    return sorted(read_study(search_dir).get_trials(), key=lambda t: t.number)


WRITER = """
import sys
from hpcnn.tune.study import storage
import optuna
study = optuna.load_study(study_name="search", storage=storage(sys.argv[1]))
for i in range(int(sys.argv[3])):
    trial = study.ask()
    trial.set_user_attr("writer", sys.argv[2])
    study.tell(trial, float(i))
"""


def test_two_processes_write_the_journal_at_once(tmp_path):
    search_dir = make_search(tmp_path, trials=1, epochs=1)
    procs = [subprocess.Popen([PYTHON, "-c", WRITER, str(search_dir), name, "40"], cwd=REPO) for name in "ab"]
    assert [p.wait(timeout=WORKER_TIMEOUT_S) for p in procs] == [0, 0]
    trials = trials_of(search_dir)
    assert [t.number for t in trials] == list(range(80))           # every ask got its own trial
    assert sorted(t.user_attrs["writer"] for t in trials) == ["a"] * 40 + ["b"] * 40
    assert all(t.state.name == "COMPLETE" for t in trials)          # no update lost or applied twice


def test_two_workers_pull_trials_pause_and_promote_and_never_share_one(tmp_path):
    """ASHA (min_epochs 1, η 3; 3 epochs: one rung, at epoch 1): every trial pauses at epoch 1 unless it ranks
    there; by the end the best ⌊6/3⌋ at epoch 1, and only they, have been trained on from their checkpoints."""
    search_dir = make_search(tmp_path, trials=6, epochs=3)
    with open(tmp_path / "a.log", "w") as log_a, open(tmp_path / "b.log", "w") as log_b:
        procs = [worker(search_dir, "wa", log_a), worker(search_dir, "wb", log_b)]
        assert [p.wait(timeout=WORKER_TIMEOUT_S) for p in procs] == [0, 0], (tmp_path / "a.log").read_text()[-3000:]
    trials = [t for t in trials_of(search_dir) if not t.user_attrs.get("over_budget")]
    assert all(t.state.name in ("COMPLETE", "PRUNED") for t in trials)
    firsts = [t for t in trials if "continues" not in t.user_attrs]
    assert len(firsts) == 6 and len({t.user_attrs["run_dir"] for t in firsts}) == 6  # the budget: 6 configurations
    at_rung = sorted(firsts, key=lambda t: -t.intermediate_values[1])
    by_dir = {}
    for t in trials:
        by_dir.setdefault(t.user_attrs["run_dir"], []).append(t)
    for rank, first in enumerate(at_rung):
        run_dir = search_dir / first.user_attrs["run_dir"]
        chain = by_dir[first.user_attrs["run_dir"]]
        epochs = [json.loads(line)["epoch"] for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
        summary = json.loads((run_dir / "summary.json").read_text())
        assert epochs == list(range(len(epochs)))                      # each epoch trained once, by one worker
        if rank < 2:  # ranked at the rung: trained to the end, in one trial or paused and continued
            assert epochs == [0, 1, 2] and summary["status"] == "completed"
            assert chain[-1].state.name == "COMPLETE" and list(chain[-1].intermediate_values) == [1, 2, 3]
            assert all(t.user_attrs["continues"] == chain[0].number for t in chain[1:])
            assert all(t.params == first.params for t in chain)
        if len(chain) == 1 and chain[0].state.name == "PRUNED":  # paused, never promoted: stopped at the rung
            assert epochs == [0] and summary["status"] == "paused" and chain[0].user_attrs["paused_at"] == 1
            assert list((run_dir / "checkpoints").glob("ckpt-*.pt")) and not (run_dir / "checkpoints" /
                                                                                "model_final.pt").exists()
    # 6 < η² = 9 reach the rung: it promotes only once all have, so exactly the best 2 went on, no early guess
    assert sum(c[-1].state.name == "COMPLETE" for c in by_dir.values()) == 2
    logs = (tmp_path / "a.log").read_text() + (tmp_path / "b.log").read_text()
    started = [int(line.split(": starting trial ")[1].split()[0]) for line in logs.splitlines()
               if ": starting trial " in line]
    assert sorted(started) == [t.number for t in trials]              # each trial started exactly once
    from hpcnn.tune.status import report

    rep = report(search_dir, plots=True)
    assert rep["epochs_saved_by_pruning"] > 0 and rep["best"] and (search_dir / "best.yaml").is_file()
    assert rep["epochs_run"] == sum(len(json.loads("[" + ",".join((search_dir / d / "metrics.jsonl").read_text()
                                                                  .splitlines()) + "]")) for d in by_dir)
    assert (search_dir / "history.png").read_bytes().startswith(b"\x89PNG")
    from hpcnn.compare.runs import expand

    runs = expand(search_dir)  # `hpcnn compare DIR`: every configuration's curve, paused ones marked
    assert [r.name for r in runs] == sorted(Path(d).name for d in by_dir)
    assert [r.state for r in runs] == [by_dir[f"trials/{r.name}"][-1].user_attrs["status"] for r in runs]


def test_a_paused_and_promoted_trial_ends_bitwise_as_an_uninterrupted_one(tmp_path):
    """A trial paused at a rung and continued by a promotion: the same weights as that trial trained in one go."""
    import copy

    import optuna

    from hpcnn.tune import asha
    from hpcnn.tune.study import open_study
    from hpcnn.tune.worker import run_trial

    search_dir = make_search(tmp_path, trials=1, epochs=3, **LONG)
    search = read_record(search_dir)
    study = open_study(search_dir, search, "w")
    trial = study.ask()
    trial.set_user_attr("run_dir", "trials/trial-0000")
    assert run_trial(study, search, search_dir, trial) == "paused"   # alone at its rung: ⌊1/3⌋ = 0 rank there
    (paused,) = trials_of(search_dir)
    assert paused.state.name == "PRUNED" and paused.user_attrs["paused_at"] == 1
    assert asha.promote(study, search, search_dir, False) is None            # still nothing ranks
    for _ in range(2):  # two worse configurations reach the rung: ⌊3/3⌋ = 1, the paused trial ranks first
        worse = study.ask({"optim.lr": optuna.distributions.FloatDistribution(0.01, 0.02)})
        worse.set_user_attr("run_dir", f"trials/worse-{worse.number}")
        worse.report(-1.0, 1)
        worse.set_user_attr("paused_at", 1)
        study.tell(worse, state=optuna.trial.TrialState.PRUNED)
    assert asha.promote(study, search, search_dir, False) == 0
    assert asha.promote(study, search, search_dir, False) is None            # claimed: never promoted twice
    cont = study.ask()
    assert cont.user_attrs["continues"] == 0 and cont.user_attrs["run_dir"] == "trials/trial-0000"
    assert run_trial(study, search, search_dir, cont) == "completed"
    done = trials_of(search_dir)[-1]
    assert done.state.name == "COMPLETE" and list(done.intermediate_values) == [1, 2, 3]
    assert done.user_attrs["epochs_trained"] == 2 and done.params == paused.params
    from hpcnn.config import apply_overrides, from_dict
    from hpcnn.run import run_job

    cfg = from_dict(apply_overrides(copy.deepcopy(search.base_data), done.user_attrs["overrides"]), "reference")
    run_job(cfg, tmp_path / "uninterrupted")
    got = torch.load(search_dir / "trials" / "trial-0000" / "checkpoints" / "model_final.pt", weights_only=True)
    want = torch.load(tmp_path / "uninterrupted" / "checkpoints" / "model_final.pt", weights_only=True)
    assert all(torch.equal(got["model"][k], want["model"][k]) for k in want["model"])


LONG = {"optim.lr": {"type": "float", "low": 0.01, "high": 0.02}}


def first_checkpoint(search_dir):
    return sorted(search_dir.glob("trials/trial-0000/checkpoints/ckpt-*.pt"))


def test_a_killed_workers_trial_is_retried_by_another_from_its_checkpoint(tmp_path):
    search_dir = make_search(tmp_path, trials=1, epochs=10, pruner="none", extra=["train.log_every=2"], **LONG)
    with open(tmp_path / "a.log", "w") as log:
        proc = worker(search_dir, "wa", log)
        wait_for(lambda: first_checkpoint(search_dir), proc, "a first checkpoint")
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=60)
    assert trials_of(search_dir)[0].state.name == "RUNNING"
    beat = search_dir / "trials" / "trial-0000" / HEARTBEAT
    old = time.time() - 10_000      # its heartbeat, as it looks once workers.grace_s has passed
    os.utime(beat, (old, old))
    proc = subprocess.run([PYTHON, "-m", "hpcnn.tune.worker", str(search_dir), "--worker-id", "wb"], cwd=REPO,
                          capture_output=True, text=True, timeout=WORKER_TIMEOUT_S)
    assert proc.returncode == 0, proc.stderr[-3000:]
    dead, retry = trials_of(search_dir)
    assert dead.state.name == "FAIL" and "stopped beating" in dead.user_attrs["failure"]
    assert retry.state.name == "COMPLETE" and retry.system_attrs["failed_trial"] == 0
    assert retry.params == dead.params and retry.user_attrs["run_dir"] == dead.user_attrs["run_dir"]
    assert "resuming from" in proc.stderr + proc.stdout
    lines = (search_dir / "trials" / "trial-0000" / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(line)["epoch"] for line in lines][-1] == 9
    from hpcnn.tune.status import format_report, report

    rows = report(search_dir)["trials"]  # `hpcnn tune status`: the retry names the trial it retries
    assert [(r["state"], r["retry_of"]) for r in rows] == [("fail", None), ("complete", 0)]
    assert "stopped beating" in rows[0]["failure"] and "  trial  state" in format_report(report(search_dir))


if sys.platform != "linux":  # pragma: no cover
    pytestmark = pytest.mark.skip("signals and O_EXCL locks as on the cluster's Linux nodes")


def test_a_worker_waiting_for_a_promotion_leaves_cleanly_when_preempted(tmp_path):
    """Budget spent, another worker's trial still below the rung: this worker waits (it may have a promotion to
    run soon); a preemption signal then ends it at once with nothing lost (it runs no trial)."""
    from hpcnn.tune.study import open_study

    search_dir = make_search(tmp_path, trials=1, epochs=6)        # rungs at epoch 1 and 3
    search = read_record(search_dir)
    study = open_study(search_dir, search, "other")
    other = study.ask()                                            # the budget's one trial, run by another worker
    other.set_user_attr("run_dir", "trials/trial-0000")
    other.set_user_attr("epochs", 6)
    (search_dir / "trials" / "trial-0000").mkdir(parents=True)
    (search_dir / "trials" / "trial-0000" / HEARTBEAT).touch()    # alive: not retried
    with open(tmp_path / "w.log", "w") as log:
        proc = worker(search_dir, "w", log)
        wait_for(lambda: "waiting while running trials" in (tmp_path / "w.log").read_text(), proc, "it waits")
        proc.send_signal(signal.SIGUSR2)
        assert proc.wait(timeout=60) == 0
    text = (tmp_path / "w.log").read_text()
    assert "SIGUSR2 while waiting for a promotion" in text and "Traceback" not in text
    assert [t.state.name for t in trials_of(search_dir)] == ["RUNNING"]   # the other worker's trial untouched
