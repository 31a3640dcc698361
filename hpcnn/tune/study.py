"""The study on the shared file system: Optuna's journal storage in the search directory, no server.

``study.journal`` is an append-only log every worker and every login-node shell replays.
Appends are serialised by ``JournalFileOpenLock``: a lock file created with O_CREAT|O_EXCL,
atomic on local disks and on NFSv3+ / Lustre, where fcntl locks are not always honoured (the
reason SQLite is not used); a lock left by a killed process is broken after ``LOCK_GRACE_S``.

Besides Optuna's own records the study keeps hpcnn's: each trial's run directory
(user attr ``run_dir``) and, per worker (Slurm ``ARRAYJOB_TASK``), the trial it runs (study
user attr ``worker:<id>``), so a requeued worker resumes its own trial.
"""
from __future__ import annotations

import hashlib
import warnings
from pathlib import Path

from .spec import Search

JOURNAL = "study.journal"
LOCK_GRACE_S = 30
STUDY_NAME = "search"


def storage(search_dir: str | Path):
    import optuna

    path = str(Path(search_dir) / JOURNAL)
    backend = optuna.storages.journal.JournalFileBackend(
        path, lock_obj=optuna.storages.journal.JournalFileOpenLock(path, grace_period=LOCK_GRACE_S))
    return optuna.storages.JournalStorage(backend)


def worker_seed(search: Search, worker_id: str) -> int | None:
    """The sampler's seed for this worker: the search's seed plus a number of its own (None: unseeded)."""
    seed = search.spec.sampler.seed
    if seed is None:
        return None
    return seed + int(hashlib.sha256(worker_id.encode()).hexdigest()[:8], 16) % 100_000


def sampler(search: Search, seed: int | None):
    import optuna

    spec = search.spec.sampler
    if spec.name == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    if spec.name == "grid":
        from .space import grid_space

        return optuna.samplers.GridSampler(grid_space(search.space, "search"), seed=seed)
    with warnings.catch_warnings():  # multivariate and group are "experimental" in 5.1, and what conditional keys need
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        # constant_liar: a trial still running counts as a poor one, so K workers do not all draw near the same point
        return optuna.samplers.TPESampler(seed=seed, n_startup_trials=spec.startup_trials, multivariate=True,
                                          group=any(p.when for p in search.space.values()), constant_liar=True)


def pruner(search: Search):
    """Optuna's pruner for median and hyperband (their pruning is final); asha and none prune nothing here."""
    import optuna

    spec = search.spec.pruner
    if spec.name == "hyperband":  # the last rung: the epochs of the first trial that ran to its end
        return optuna.pruners.HyperbandPruner(min_resource=spec.min_epochs, max_resource="auto",
                                              reduction_factor=spec.reduction_factor)
    if spec.name == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=spec.startup_trials, n_warmup_steps=spec.min_epochs)
    return optuna.pruners.NopPruner()  # none; asha: hpcnn pauses and promotes trials itself (hpcnn.tune.asha)


def open_study(search_dir: str | Path, search: Search, worker_id: str = "login"):
    """The search's study (created on first use), with this worker's sampler and the search's pruner."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    return optuna.create_study(storage=storage(search_dir), study_name=STUDY_NAME, load_if_exists=True,
                               direction=search.direction, sampler=sampler(search, worker_seed(search, worker_id)),
                               pruner=pruner(search))


def running_trial(study, frozen):
    """A live ``Trial`` for a trial already running (a requeued worker takes its own back).

    Optuna has no public call for this (``study.ask`` only hands out new or queued trials); the
    ``Trial(study, trial_id)`` constructor is the one place hpcnn touches a private attribute of
    Optuna (``FrozenTrial._trial_id``), pinned by ``optuna>=5.1,<6`` and held by the requeue tests.
    """
    import optuna

    return optuna.trial.Trial(study, frozen._trial_id)


def retried_from(frozen) -> int | None:
    """The number of the failed trial this one retries (Optuna's retry callback records it), else None."""
    import optuna

    with warnings.catch_warnings():  # "experimental" in 5.1, though present since 2.8
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return optuna.storages.RetryFailedTrialCallback.retried_trial_number(frozen)


def read_study(search_dir: str | Path):
    """The study for reading (status, plots): no sampler state needed."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    return optuna.load_study(study_name=STUDY_NAME, storage=storage(search_dir))


__all__ = ["JOURNAL", "open_study", "pruner", "read_study", "retried_from", "running_trial", "sampler", "storage", "worker_seed"]
