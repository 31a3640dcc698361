"""Which trial a worker runs next: its own running one, a retry, a new one, or none (budget spent).

Rules, all through the study in the journal (no server, no coordinator process):

* a worker (Slurm ``ARRAYJOB_TASK``, the same after a requeue) first takes back the trial the
  study records as its own (``worker:<id>``) if that trial is still running;
* a running trial whose heartbeat file (``RUN_DIR/tune-heartbeat``, touched every
  ``workers.heartbeat_s``) is older than ``workers.grace_s`` belongs to a dead worker: one
  worker (an O_EXCL marker file decides which) marks it failed and queues a retry with the same
  parameters and run directory, so the retry resumes from that trial's newest checkpoint;
* then, under ASHA, the best paused trial that now ranks at its rung (``asha.promote``: a
  continuation of it is queued, and taken like a retry);
* otherwise a new trial, unless the budget is spent. Finished (completed, pruned, paused) and
  running trials count; failed ones do not (their retry does), nor do continuations (the trial they
  continue already counted). Two workers asking at once may both get a trial: the one numbered
  past the budget is closed at once as over budget.
"""
from __future__ import annotations

import time
from pathlib import Path

from ..files import create_once
from . import asha
from .spec import Search
from .study import running_trial

HEARTBEAT = "tune-heartbeat"
TRIALS_DIR = "trials"
STOPPED_BEATING = "worker stopped beating (killed or node lost)"


def trial_dir_name(number: int) -> str:
    return f"{TRIALS_DIR}/trial-{number:04d}"


def _states():
    from optuna.trial import TrialState

    return TrialState


def counts_toward_budget(trial) -> bool:
    state = _states()
    return trial.state in (state.COMPLETE, state.PRUNED, state.RUNNING, state.WAITING) \
        and not trial.user_attrs.get("over_budget") and "continues" not in trial.user_attrs


def device_hours(trials) -> float:
    return sum(t.user_attrs.get("device_hours", 0.0) for t in trials if t.state.is_finished())


def hours_spent(search: Search, trials) -> bool:
    hours = search.spec.budget.gpu_hours
    return hours is not None and device_hours(trials) >= hours


def budget_spent(search: Search, trials) -> bool:
    budget = search.spec.budget
    if budget.trials is not None and sum(map(counts_toward_budget, trials)) >= budget.trials:
        return True
    return hours_spent(search, trials)


def heartbeat_age(search_dir: Path, trial, now: float) -> float:
    run_dir = trial.user_attrs.get("run_dir")
    try:
        return now - (search_dir / run_dir / HEARTBEAT).stat().st_mtime
    except (OSError, TypeError):
        start = trial.datetime_start.timestamp() if trial.datetime_start else now
        return now - start


def retry_stale(study, search: Search, search_dir: Path, mine: int | None = None) -> list[int]:
    """Fail and retry every running trial whose worker stopped beating; the numbers retried."""
    from optuna.storages import RetryFailedTrialCallback

    state, now, retried = _states(), time.time(), []
    for trial in study.get_trials(deepcopy=False, states=(state.RUNNING,)):
        if trial.number == mine or heartbeat_age(search_dir, trial, now) <= search.spec.workers.grace_s:
            continue
        run_dir = search_dir / trial.user_attrs.get("run_dir", trial_dir_name(trial.number))
        run_dir.mkdir(parents=True, exist_ok=True)
        if not create_once(run_dir / f"tune-retried-{trial.number}"):
            continue
        running_trial(study, trial).set_user_attr("failure", STOPPED_BEATING)
        failed = study.tell(trial.number, state=state.FAIL, skip_if_finished=True)
        RetryFailedTrialCallback()(study, failed)
        retried.append(trial.number)
    return retried


def own_trial(study, worker_id: str):
    """The trial this worker ran before a requeue, if it is still running (else None)."""
    number = study.user_attrs.get(f"worker:{worker_id}")
    if number is None:
        return None
    trials = [t for t in study.get_trials(deepcopy=False) if t.number == number]
    return trials[0] if trials and trials[0].state == _states().RUNNING else None


def new_trial(study, search: Search, worker_id: str):
    """A trial to run (a queued retry first), or None once the budget is spent."""
    trials = study.get_trials(deepcopy=False)
    waiting = any(t.state == _states().WAITING for t in trials)
    if not waiting and budget_spent(search, trials):
        return None
    trial = study.ask()
    retry = "run_dir" in trial.user_attrs  # a retry (RetryFailedTrialCallback copies user attributes) or a promotion
    if not retry and search.spec.budget.trials is not None:
        before = [t for t in study.get_trials(deepcopy=False) if t.number < trial.number]
        if sum(map(counts_toward_budget, before)) >= search.spec.budget.trials:
            trial.set_user_attr("over_budget", True)
            study.tell(trial, state=_states().FAIL)
            return None
    if not retry:
        trial.set_user_attr("run_dir", trial_dir_name(trial.number))
    trial.set_user_attr("worker", worker_id)
    study.set_user_attr(f"worker:{worker_id}", trial.number)
    return trial


def next_trial(study, search: Search, search_dir: Path, worker_id: str):
    """(trial, resumed?): this worker's own running trial, else a retry, a promotion or a new one; (None, False)
    when there is nothing to run now."""
    own = own_trial(study, worker_id)
    retry_stale(study, search, search_dir, mine=own.number if own else None)
    if own is not None:
        return running_trial(study, own), True
    trials = study.get_trials(deepcopy=False)
    if asha.uses_rungs(search) and not hours_spent(search, trials):  # a trial budget counts configurations:
        asha.promote(study, search, search_dir, not budget_spent(search, trials))  # promotions go on after it
    return new_trial(study, search, worker_id), False


__all__ = ["HEARTBEAT", "budget_spent", "hours_spent", "counts_toward_budget", "device_hours", "heartbeat_age", "new_trial",
           "next_trial", "STOPPED_BEATING", "own_trial", "retry_stale", "trial_dir_name"]
