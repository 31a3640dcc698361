"""A tuning worker: pull trials from the study and train each with the ordinary Trainer until the budget is spent.

    python -m hpcnn.tune.worker SEARCH_DIR        # what each array task runs (through TunePayload)

Each trial trains in its own run directory (``SEARCH_DIR/trials/trial-NNNN``) with
``run_job(..., resume="auto")``, so a requeued worker continues its trial from the newest
checkpoint. ``TrialReporter`` (a trainer event callback) reports the monitored validation
metric after every epoch; when the pruner says stop, the trial's phases end like an early stop
(checkpoint written, test run as usual) and summary.json says ``status: pruned``.

On a preemption the worker returns "preempted" with its trial still running in the study
(the payload requeues the job); any other end of a trial is told to the study and the worker
takes the next one. A heartbeat thread touches the trial's heartbeat file meanwhile.
"""
from __future__ import annotations

import argparse
import copy
import logging
import os
import socket
import sys
import threading
from contextlib import contextmanager
from pathlib import Path

from ..errors import HpcnnError
from ..train.events import Callback
from .spec import Search, read_record
from .trials import HEARTBEAT, next_trial

log = logging.getLogger("hpcnn.tune")
MAX_FAILURES_IN_A_ROW = 3


class TrialReporter(Callback):
    """Reports ``val.<name>`` every epoch (rank 0, which holds ``trial``) and ends the run when the pruner
    says so (every rank: rank 0's decision is broadcast)."""

    def __init__(self, trial, metric: str):
        self.trial, self.name, self.pruned = trial, metric.split(".", 1)[1], False

    def on_epoch_end(self, trainer, record: dict) -> None:
        decision = None
        last = record["epoch"] + 1 >= trainer.total_epochs
        if trainer.is_main:
            value = (record.get("val") or {}).get(self.name)
            if isinstance(value, (int, float)):
                self.trial.report(float(value), record["epoch"] + 1)
            decision = not last and bool(self.trial.should_prune())  # after the last epoch: nothing left to save
        if trainer.comm.broadcast_object(decision):
            self.pruned = True
            trainer.end_run_early()  # the trainer checkpoints and finishes normally
            if trainer.is_main:
                log.info("trial %d pruned after epoch %d", self.trial.number, record["epoch"] + 1)

    def on_run_end(self, trainer, summary: dict) -> None:
        if self.pruned:
            summary["status"] = "pruned"


@contextmanager
def heartbeat(path: Path, interval_s: float):
    """Touch ``path`` every ``interval_s`` while the block runs: other workers see this trial is alive."""
    stop = threading.Event()

    def beat():
        while True:
            try:
                path.touch()
            except OSError as err:  # a full or flaky file system: say so, keep training
                log.warning("heartbeat %s: %s", path, err)
            if stop.wait(interval_s):
                return

    path.parent.mkdir(parents=True, exist_ok=True)
    thread = threading.Thread(target=beat, name="tune-heartbeat", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()


def default_worker_id() -> str:
    """The Slurm array task (``ARRAYJOB_TASK``: unchanged by a requeue), else host and pid."""
    from ..env import job_info

    return job_info().job_id or f"{socket.gethostname()}-{os.getpid()}"


def _device_hours(search: Search, summary: dict) -> float:
    slurm = search.base.slurm
    devices = max(1, slurm.gpus_per_node) * max(1, slurm.nodes)
    return float(summary.get("wall_seconds") or 0.0) * devices / 3600.0


def train(search: Search, overrides: list[str], run_dir: Path, trial=None, label: str = "trial",
          port: int | None = None):
    """run_job for one trial's config in its run directory, resumed from its newest checkpoint (every rank).

    ``port``: a distributed trial's own rendezvous port (each trial's process group is new; a port of
    its own keeps a rank still closing the previous group from meeting the next one there).
    """
    from ..config import apply_overrides, from_dict
    from ..run import run_job

    if port is not None:
        os.environ["MASTER_PORT"] = str(port)
    cfg = from_dict(apply_overrides(copy.deepcopy(search.base_data), overrides), f"{label} [{' '.join(overrides)}]")
    return run_job(cfg, run_dir, resume="auto", callbacks=[TrialReporter(trial, search.metric)])


def run_trial(study, search: Search, search_dir: Path, trial, assignments=None) -> str:
    """Train one trial to its end (rank 0); its status (completed, early_stopped, pruned, preempted, failed)."""
    from .space import suggest

    overrides = suggest(trial, search.space)
    run_dir = trial.user_attrs["run_dir"]
    trial.set_user_attr("overrides", overrides)
    port = None
    if assignments is not None:  # the other ranks of a distributed trial train the same
        port = assignments.port()
        assignments.publish({"trial": trial.number, "overrides": overrides, "run_dir": run_dir, "port": port})
    with heartbeat(search_dir / run_dir / HEARTBEAT, search.spec.workers.heartbeat_s):
        result = train(search, overrides, search_dir / run_dir, trial, f"trial {trial.number}", port)
    if result.status == "preempted":
        return "preempted"
    return tell(study, search, trial, result.summary)


def tell(study, search: Search, trial, summary: dict) -> str:
    """The study learns how the trial ended: its value, pruned, or failed (no metric)."""
    import optuna

    from .. import results

    trial.set_user_attr("epochs_run", summary.get("epochs_run"))
    trial.set_user_attr("device_hours", _device_hours(search, summary))
    trial.set_user_attr("status", summary.get("status"))
    if summary.get("status") == "pruned":
        study.tell(trial, state=optuna.trial.TrialState.PRUNED)
        return "pruned"
    value = results.value(summary, search.metric)
    if value is None:
        trial.set_user_attr("failure", f"{search.metric} missing from summary.json")
        study.tell(trial, state=optuna.trial.TrialState.FAIL)
        return "failed"
    study.tell(trial, value)
    return summary["status"]


def follow(search: Search, search_dir: Path, assignments) -> str:
    """Ranks > 0 of a distributed worker: train what rank 0 publishes until it says done (or a preemption)."""
    while True:
        message = assignments.receive()
        if message.get("done"):
            return "done"
        try:
            result = train(search, message["overrides"], search_dir / message["run_dir"], None,
                           f"trial {message['trial']}", message.get("port"))
        except HpcnnError as err:  # rank 0 fails the same way and tells the study
            log.warning("trial %s: %s", message["trial"], err)
            continue
        if result.status == "preempted":
            return "preempted"


def work(search_dir: str | Path, worker_id: str | None = None, max_trials: int | None = None) -> str:
    """Run trials until the budget is spent ("done") or this worker is preempted ("preempted").

    ``max_trials``: leave after this many trials (tests, a worker sharing its allocation). Under a
    launcher with several ranks (a distributed trial), rank 0 asks and the others follow (``ranks``).
    """
    from ..env import detect_world, job_info
    from ..train.logs import setup_logging
    from .ranks import Assignments

    world = detect_world()
    setup_logging(world.rank)  # the worker's own lines, before its first trial sets it up again
    search_dir = Path(search_dir).absolute()
    search = read_record(search_dir)
    worker_id = worker_id or default_worker_id()
    assignments = (Assignments(search_dir, worker_id, job_info().restart_count)
                   if world.world_size > 1 else None)
    if world.rank != 0:
        return follow(search, search_dir, assignments)
    outcome = lead(search, search_dir, worker_id, max_trials, assignments)
    if assignments is not None and outcome == "done":
        assignments.publish({"done": True})
    return outcome


def lead(search: Search, search_dir: Path, worker_id: str, max_trials: int | None, assignments) -> str:
    """Rank 0: ask, train, tell, until the budget is spent or a preemption."""
    import optuna

    from .study import open_study

    study = open_study(search_dir, search, worker_id)
    failures = ran = 0
    while max_trials is None or ran < max_trials:
        trial, resumed = next_trial(study, search, search_dir, worker_id)
        if trial is None:
            return "done"
        log.info("worker %s: %s trial %d", worker_id, "resuming" if resumed else "starting", trial.number)
        try:
            outcome = run_trial(study, search, search_dir, trial, assignments)
        except HpcnnError as err:
            trial.set_user_attr("failure", str(err).splitlines()[0])
            study.tell(trial, state=optuna.trial.TrialState.FAIL)
            failures += 1
            if failures >= MAX_FAILURES_IN_A_ROW:
                raise
            continue
        if outcome == "preempted":
            return "preempted"
        failures, ran = 0, ran + 1
    return "done"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m hpcnn.tune.worker", description=__doc__.splitlines()[0])
    parser.add_argument("search_dir")
    parser.add_argument("--worker-id", help="default: the Slurm array task, else host-pid")
    parser.add_argument("--max-trials", type=int, help="leave after this many trials")
    args = parser.parse_args(argv)
    try:
        outcome = work(args.search_dir, args.worker_id, args.max_trials)
    except HpcnnError as err:
        print(f"error: {err}", file=sys.stderr)
        return err.exit_code
    from ..errors import EXIT_PREEMPTED

    return EXIT_PREEMPTED if outcome == "preempted" else 0


__all__ = ["TrialReporter", "default_worker_id", "follow", "heartbeat", "lead", "main", "run_trial", "tell", "train",
           "work"]


if __name__ == "__main__":
    sys.exit(main())
