"""A tuning worker: pull trials from the study and train each with the ordinary Trainer until the budget is spent.

    python -m hpcnn.tune.worker SEARCH_DIR        # what each array task runs (through TunePayload)

Each trial trains in its own run directory (``SEARCH_DIR/trials/trial-NNNN``) with
``run_job(..., resume="auto")``, so a requeued worker continues its trial from the newest
checkpoint. ``TrialReporter`` (a trainer event callback) reports the monitored validation
metric after every epoch. Under ASHA (``hpcnn.tune.asha``) a trial that reaches a rung without
ranking there is paused (checkpoint, ``status: paused``) and may be resumed later by any worker;
under the median and hyperband pruners a pruned trial's phases end like an early stop
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
import time
from contextlib import contextmanager
from pathlib import Path

from ..errors import EXIT_PREEMPTED, HpcnnError
from ..train.events import Callback
from . import asha
from .spec import Search, read_record
from .trials import HEARTBEAT, budget_spent, hours_spent, next_trial

log = logging.getLogger("hpcnn.tune")
MAX_FAILURES_IN_A_ROW = 3
IDLE_POLL_S = 5.0  # a worker with nothing to run re-reads the study this often while a promotion may still come


class TrialReporter(Callback):
    """Reports ``val.<name>`` every epoch (rank 0, which holds ``trial``); at an ASHA rung pauses the run
    unless it ranks there, under another pruner ends it when the pruner says so (every rank: rank 0's
    decision is broadcast)."""

    def __init__(self, trial, search: Search, search_dir: Path):
        self.trial, self.search, self.search_dir = trial, search, search_dir
        self.name, self.pruned = search.metric.split(".", 1)[1], False

    def on_run_start(self, trainer) -> None:
        if trainer.is_main:  # the rungs of this configuration (train.epochs may be searched)
            self.trial.set_user_attr("epochs", trainer.total_epochs)

    def on_epoch_end(self, trainer, record: dict) -> None:
        decision = None
        epoch = record["epoch"] + 1
        if trainer.is_main:
            value = (record.get("val") or {}).get(self.name)
            if isinstance(value, (int, float)):
                self.trial.report(float(value), epoch)
            if epoch < trainer.total_epochs:  # after the last epoch: nothing left to save
                decision = self._decide(epoch, trainer.total_epochs)
        decision = trainer.comm.broadcast_object(decision)
        if decision == "pause":
            trainer.pause_run()  # checkpoint, stop; a worker resumes it if it comes to rank at this rung
        elif decision == "prune":
            self.pruned = True
            trainer.end_run_early()  # the trainer checkpoints and finishes normally
        if decision and trainer.is_main:
            log.info("trial %d %s after epoch %d", self.trial.number, "paused" if decision == "pause" else "pruned",
                     epoch)

    def _decide(self, epoch: int, total: int) -> str | None:
        spec = self.search.spec.pruner
        if asha.uses_rungs(self.search):
            if epoch not in asha.rungs(spec.min_epochs, spec.reduction_factor, total):
                return None
            more = not budget_spent(self.search, self.trial.study.get_trials(deepcopy=False))
            return None if asha.train_on(self.trial, self.search, self.search_dir, epoch, more) else "pause"
        return "prune" if self.trial.should_prune() else None

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


def _device_hours(search: Search, seconds: float) -> float:
    slurm = search.base.slurm
    devices = max(1, slurm.gpus_per_node) * max(1, slurm.nodes)
    return max(0.0, seconds) * devices / 3600.0


def train(search: Search, search_dir: Path, overrides: list[str], run_dir: Path, trial=None, label: str = "trial",
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
    return run_job(cfg, run_dir, resume="auto", callbacks=[TrialReporter(trial, search, search_dir)])


def run_trial(study, search: Search, search_dir: Path, trial, assignments=None) -> str:
    """Train one trial to its end (rank 0); its status (completed, early_stopped, pruned, paused, preempted, failed)."""
    from .space import suggest

    overrides = suggest(trial, search.space)
    run_dir = trial.user_attrs["run_dir"]
    trial.set_user_attr("overrides", overrides)
    if "continues" in trial.user_attrs:  # a promotion: the curve so far, so the sampler and plots see all of it
        trials = study.get_trials(deepcopy=False)
        mine = next(t.intermediate_values for t in trials if t.number == trial.number)
        for epoch, value in sorted(asha.configs(trials)[run_dir].values.items()):
            if epoch not in mine:
                trial.report(value, epoch)
    port = None
    if assignments is not None:  # the other ranks of a distributed trial train the same
        port = assignments.port()
        assignments.publish({"trial": trial.number, "overrides": overrides, "run_dir": run_dir, "port": port})
    with heartbeat(search_dir / run_dir / HEARTBEAT, search.spec.workers.heartbeat_s):
        result = train(search, search_dir, overrides, search_dir / run_dir, trial, f"trial {trial.number}", port)
    if result.status == "preempted":
        return "preempted"
    return tell(study, search, trial, result.summary)


def tell(study, search: Search, trial, summary: dict) -> str:
    """The study learns how the trial ended: its value, pruned or paused, or failed (no metric).

    ``epochs_trained`` and ``device_hours`` are this trial's share: a continuation counts from where the
    trial it continues paused (``epochs_before``, ``wall_before``)."""
    import optuna

    from .. import results

    before = trial.user_attrs
    wall = float(summary.get("wall_seconds") or 0.0)
    trial.set_user_attr("epochs_run", summary.get("epochs_run"))
    trial.set_user_attr("epochs_trained", int(summary.get("epochs_run") or 0) - int(before.get("epochs_before", 0)))
    trial.set_user_attr("wall_seconds", wall)
    trial.set_user_attr("device_hours", _device_hours(search, wall - float(before.get("wall_before", 0.0))))
    trial.set_user_attr("status", summary.get("status"))
    if summary.get("status") in ("pruned", "paused"):
        if summary["status"] == "paused":
            trial.set_user_attr("paused_at", summary.get("epochs_run"))
        study.tell(trial, state=optuna.trial.TrialState.PRUNED)
        return summary["status"]
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
            result = train(search, search_dir, message["overrides"], search_dir / message["run_dir"], None,
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

    from ..run import StopFlag
    from .study import open_study

    study = open_study(search_dir, search, worker_id)
    failures = ran = 0
    idle, waiting = StopFlag(), False  # listens while no trial runs (each trial's run_job installs its own)
    while max_trials is None or ran < max_trials:
        trial, resumed = next_trial(study, search, search_dir, worker_id)
        if trial is None:
            trials = study.get_trials(deepcopy=False)
            if hours_spent(search, trials) or not asha.more_may_rank(search, trials):
                return "done"
            if not waiting:
                log.info("worker %s: budget spent; waiting while running trials can still reach a rung", worker_id)
                idle.install()
                waiting = True
            time.sleep(IDLE_POLL_S)  # budget spent; a trial still running may yet make a paused one rank
            if idle():  # preempted or out of time while idle: nothing of ours to save, others promote
                log.info("worker %s: %s while waiting for a promotion; no trial running here, leaving", worker_id,
                         idle.signal_name)
                return "done"
            continue
        waiting = False  # the trial's run_job takes the signals over
        continues = trial.user_attrs.get("continues")
        log.info("worker %s: %s trial %d%s", worker_id, "resuming" if resumed else "starting", trial.number,
                 f" (continues trial {continues})" if continues is not None else "")
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
    return EXIT_PREEMPTED if outcome == "preempted" else 0


__all__ = ["TrialReporter", "default_worker_id", "follow", "heartbeat", "lead", "main", "run_trial", "tell", "train",
           "work"]


if __name__ == "__main__":
    sys.exit(main())
