"""Asynchronous successive halving that pauses trials and resumes the good ones (ASHA, Li et al. 2020).

A trial stops at each rung (``min_epochs``, ``min_epochs·η``, ``min_epochs·η²`` … epochs, below
its last epoch) with a checkpoint: its run is *paused* (summary ``status: paused``; in the study a
PRUNED trial with user attr ``paused_at``). A paused trial is promoted — trained on from that
checkpoint to the next rung — once it ranks in the best ``⌊n/η⌋`` of the ``n`` trials that reached
its rung. A worker looks for a promotion before it starts a new trial (highest rung first), and a
trial that reaches a rung already ranked there trains on without stopping.

A rung promotes only once η² trials have reached it, or once no more can (the trial budget is
spent and no running trial is below it). Ranked among fewer, "the best ⌊n/η⌋" is the best of a
handful — the first trials to arrive — and each such early promotion costs a full trial's epochs
and, once it finishes, steers the sampler (TPE ranks finished trials above paused ones).

Why not Optuna's ``SuccessiveHalvingPruner``: its pruning is final, so it promotes the first
trials to reach a rung (there is nothing yet to compare them with) and can never go back to a good
trial it stopped; with a few dozen trials that decides a search (docs/benchmarks.md). Here a
promotion is a *continuation*: a new study trial with the same parameters and run directory (user
attr ``continues``: the trial it continues), which does not count toward the trial budget and
resumes the run from its newest checkpoint — bitwise what an uninterrupted trial would have done.

Two workers never promote the same trial: the promotion is claimed by creating
``RUN_DIR/tune-promoted-<epoch>`` with O_EXCL (as retries are claimed, ``trials.py``).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..files import create_once
from .spec import Search

PROMOTED = "tune-promoted-{epoch}"


def rungs(min_epochs: int, eta: int, total: int) -> list[int]:
    """The epochs a trial of ``total`` epochs pauses at: min_epochs·η^k below total."""
    out, epoch = [], min_epochs
    while epoch < total:
        out.append(epoch)
        epoch *= eta
    return out


def uses_rungs(search: Search) -> bool:
    return search.spec.pruner.name == "asha"


@dataclass
class Config:
    """One configuration of the search: every study trial that trained its run directory."""

    run_dir: str
    values: dict  # epoch -> the metric reported then (whichever trial reported it)
    latest: object  # its newest study trial
    total: int | None  # its epochs (user attr ``epochs``, set when its first trial starts)


def configs(trials) -> dict[str, Config]:
    """The study's trials grouped by run directory (a trial and its continuations are one configuration)."""
    out: dict[str, Config] = {}
    for trial in sorted(trials, key=lambda t: t.number):
        run_dir = trial.user_attrs.get("run_dir")
        if run_dir is None or trial.user_attrs.get("over_budget"):
            continue
        config = out.setdefault(run_dir, Config(run_dir, {}, trial, None))
        config.values.update(trial.intermediate_values)
        config.latest = trial
        config.total = trial.user_attrs.get("epochs", config.total)
    return out


def ranked(by_dir: dict[str, Config], epoch: int, eta: int, maximize: bool) -> list[str]:
    """Run directories in the best ⌊n/η⌋ of the n configurations that reached ``epoch``, best first."""
    reached = [(c.values[epoch], c.run_dir) for c in by_dir.values() if epoch in c.values]
    reached.sort(key=lambda pair: (-pair[0] if maximize else pair[0], pair[1]))
    return [run_dir for _, run_dir in reached[:len(reached) // eta]]


def _below(config: Config, epoch: int) -> bool:
    """Running (or queued) and still to reach ``epoch``: it may join that rung."""
    if config.latest.state.name not in ("RUNNING", "WAITING"):
        return False
    return epochs_reached(config) < epoch and (config.total is None or epoch < config.total)


def rung_open(by_dir: dict[str, Config], epoch: int, eta: int, more_trials: bool) -> bool:
    """Does the rung at ``epoch`` promote? Once η² trials reached it, or no more can (``more_trials``: the
    trial budget allows new ones)."""
    if sum(epoch in c.values for c in by_dir.values()) >= eta ** 2:
        return True
    return not more_trials and not any(_below(c, epoch) for c in by_dir.values())


def promotable(by_dir: dict[str, Config], epoch: int, eta: int, maximize: bool, more_trials: bool) -> list[str]:
    """``ranked`` where the rung is open, else nothing."""
    return ranked(by_dir, epoch, eta, maximize) if rung_open(by_dir, epoch, eta, more_trials) else []


def claim(search_dir: Path, run_dir: str, epoch: int) -> bool:
    """True for the one process that promotes ``run_dir`` past ``epoch`` (O_EXCL, as for retries)."""
    return create_once(search_dir / run_dir / PROMOTED.format(epoch=epoch))


def train_on(trial, search: Search, search_dir: Path, epoch: int, more_trials: bool) -> bool:
    """At a rung: does the running ``trial`` train on (it ranks there) rather than pause? Claims the promotion."""
    spec = search.spec.pruner
    by_dir = configs(trial.study.get_trials(deepcopy=False))
    run_dir = trial.user_attrs["run_dir"]
    if run_dir not in promotable(by_dir, epoch, spec.reduction_factor, search.direction == "maximize", more_trials):
        return False
    claim(search_dir, run_dir, epoch)  # already claimed: this trial was promoted here before a requeue
    return True


def promote(study, search: Search, search_dir: Path, more_trials: bool) -> int | None:
    """Queue the continuation of the best paused trial that now ranks at its (open) rung, highest rung first.

    Returns the number of the trial it continues, or None when no paused trial ranks. The queued
    trial is WAITING: the next ``study.ask()`` of any worker takes it (``trials.new_trial``).
    """
    spec = search.spec.pruner
    by_dir = configs(study.get_trials(deepcopy=False))
    paused = {c.run_dir: at for c in by_dir.values()  # run directory -> the rung its latest trial paused at
              if c.latest.state.name == "PRUNED" and (at := c.latest.user_attrs.get("paused_at")) is not None}
    for epoch in sorted(set(paused.values()), reverse=True):
        for run_dir in promotable(by_dir, epoch, spec.reduction_factor, search.direction == "maximize", more_trials):
            if paused.get(run_dir) != epoch or not claim(search_dir, run_dir, epoch):
                continue  # not paused here, or promoted already (by another worker a moment ago, perhaps)
            last = by_dir[run_dir].latest
            study.enqueue_trial(last.params, user_attrs={
                "run_dir": run_dir, "continues": last.number, "epochs_before": last.user_attrs.get("epochs_run", epoch),
                "wall_before": last.user_attrs.get("wall_seconds", 0.0)})
            return last.number
    return None


def more_may_rank(search: Search, trials) -> bool:
    """Could a trial still running reach a rung, and so make a paused trial rank? (then an idle worker waits)."""
    if not uses_rungs(search):
        return False
    spec = search.spec.pruner
    for config in configs(trials).values():
        if config.latest.state.name not in ("RUNNING", "WAITING"):
            continue
        if config.total is None:
            return True  # not started yet: every rung ahead
        if any(_below(config, epoch) for epoch in rungs(spec.min_epochs, spec.reduction_factor, config.total)):
            return True
    return False


def promoted_from(trials) -> set[int]:
    """Numbers of the paused trials that a continuation took on."""
    return {t.user_attrs["continues"] for t in trials if "continues" in t.user_attrs}


def epochs_reached(config: Config) -> int:
    return max(config.values, default=0)


__all__ = ["PROMOTED", "Config", "claim", "configs", "epochs_reached", "more_may_rank", "promotable", "promote",
           "promoted_from", "ranked", "rung_open", "rungs", "train_on", "uses_rungs"]
