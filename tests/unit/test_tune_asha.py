"""ASHA's bookkeeping on a real Optuna study (in memory): rungs, who ranks, which paused trial is promoted first."""
from __future__ import annotations

import optuna
import pytest

from hpcnn.tune import asha
from hpcnn.tune.spec import search_from_dict

LR = optuna.distributions.FloatDistribution(1e-4, 0.1, log=True)


def search(direction: str = "maximize", min_epochs: int = 1, eta: int = 3):
    return search_from_dict({"overrides": ["data.source=digits", "train.epochs=9"], "direction": direction,
                             "space": {"optim.lr": {"type": "float", "low": 1e-4, "high": 0.1, "log": True}},
                             "budget": {"trials": 20},
                             "pruner": {"name": "asha", "min_epochs": min_epochs, "reduction_factor": eta}})


def study(direction: str = "maximize"):
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    return optuna.create_study(direction=direction)


def paused(st, name: str, curve: dict, total: int = 9, hours: float = 0.0):
    """A trial that reported ``curve`` ({epoch: value}) and was paused at its last epoch."""
    trial = st.ask({"optim.lr": LR})
    trial.set_user_attr("device_hours", hours)
    trial.set_user_attr("run_dir", f"trials/{name}")
    trial.set_user_attr("epochs", total)
    for epoch, value in curve.items():
        trial.report(value, epoch)
    trial.set_user_attr("paused_at", max(curve))
    trial.set_user_attr("epochs_run", max(curve))
    st.tell(trial, state=optuna.trial.TrialState.PRUNED)
    return trial.number


def test_rungs_are_min_epochs_times_powers_of_eta_below_the_last_epoch():
    assert asha.rungs(1, 3, 8) == [1, 3]
    assert asha.rungs(1, 2, 8) == [1, 2, 4]
    assert asha.rungs(2, 4, 8) == [2]
    assert asha.rungs(1, 3, 9) == [1, 3]      # the last epoch is the end, not a rung
    assert asha.rungs(8, 3, 8) == []


@pytest.mark.parametrize("direction", ["maximize", "minimize"])
def test_the_best_floor_n_over_eta_rank_at_a_rung(direction):
    st = study(direction)
    for i, value in enumerate([0.5, 0.9, 0.1, 0.7, 0.3, 0.8, 0.2]):
        paused(st, f"t{i}", {1: value})
    by_dir = asha.configs(st.get_trials())
    best = ["trials/t1", "trials/t5"] if direction == "maximize" else ["trials/t2", "trials/t6"]
    assert asha.ranked(by_dir, 1, 3, direction == "maximize") == best   # ⌊7/3⌋ = 2, best first
    assert asha.ranked(by_dir, 3, 3, True) == []                         # nobody reached epoch 3


def test_promotion_takes_the_highest_rung_first_and_claims_each_trial_once(tmp_path):
    st, s = study(), search()  # the budget is spent (promote(..., more_trials=False)): every rung is open
    for i in range(9):  # rung 1: t8 best, t7 second, t6 third
        paused(st, f"t{i}", {1: 0.1 * i})
    for i in range(3):  # three of them went on to rung 3 earlier (their continuations paused there)
        paused(st, f"u{i}", {1: 0.95, 3: 0.5 + 0.1 * i})
    for name in [f"t{i}" for i in range(9)] + [f"u{i}" for i in range(3)]:
        (tmp_path / "trials" / name).mkdir(parents=True)
    for i in range(3):  # the u's were promoted past epoch 1 already
        assert asha.claim(tmp_path, f"trials/u{i}", 1)
    first = asha.promote(st, s, tmp_path, False)
    assert st.trials[first].user_attrs["run_dir"] == "trials/u2"       # ⌊3/3⌋ = 1 at epoch 3: u2
    queued = st.get_trials(states=(optuna.trial.TrialState.WAITING,))
    assert [t.user_attrs["continues"] for t in queued] == [first] and queued[0].system_attrs["fixed_params"] == st.trials[first].params
    assert queued[0].user_attrs["epochs_before"] == 3
    # rung 1 now: 12 reached it (⌊12/3⌋ = 4 rank: u0..u2 at 0.95, then t8); the u's were promoted: t8 next
    second = asha.promote(st, s, tmp_path, False)
    assert st.trials[second].user_attrs["run_dir"] == "trials/t8"
    assert asha.promote(st, s, tmp_path, False) is None                          # t7 is fifth at rung 1: it does not rank
    assert not asha.claim(tmp_path, "trials/t8", 1)                       # a second worker cannot take t8 again


def test_an_idle_worker_waits_only_while_a_running_trial_can_still_reach_a_rung():
    s = search()  # 9 epochs: rungs 1 and 3
    st = study()
    trial = st.ask({"optim.lr": LR})
    trial.set_user_attr("run_dir", "trials/a")
    assert asha.more_may_rank(s, st.get_trials())          # started, epochs unknown yet: rungs ahead
    trial.set_user_attr("epochs", 9)
    trial.report(0.5, 3)
    assert not asha.more_may_rank(s, st.get_trials())      # past its last rung: it can only complete
    other = st.ask({"optim.lr": LR})
    other.set_user_attr("run_dir", "trials/b")
    other.set_user_attr("epochs", 9)
    other.report(0.5, 1)
    assert asha.more_may_rank(s, st.get_trials())          # still to reach epoch 3
    st.tell(other, state=optuna.trial.TrialState.FAIL)
    assert not asha.more_may_rank(s, st.get_trials())
    assert not asha.more_may_rank(search_from_dict({**{"overrides": ["data.source=digits"]},
                                                    "space": {"optim.lr": {"type": "float", "low": 0.1, "high": 1}},
                                                    "budget": {"trials": 2}, "pruner": {"name": "median"}}),
                                  st.get_trials())


def test_a_rung_promotes_once_eta_squared_trials_reached_it_or_no_more_can(tmp_path):
    st, s = study(), search()  # η = 3: a rung opens at 9 trials
    for i in range(8):
        paused(st, f"t{i}", {1: 0.1 * i})
        (tmp_path / "trials" / f"t{i}").mkdir(parents=True)
    by_dir = asha.configs(st.get_trials())
    assert not asha.rung_open(by_dir, 1, 3, more_trials=True)         # 8 < 9, and more trials will come
    assert asha.promote(st, s, tmp_path, True) is None                 # t7 ranks first of 8, but not yet
    running = st.ask({"optim.lr": LR})
    running.set_user_attr("run_dir", "trials/r")
    running.set_user_attr("epochs", 9)
    by_dir = asha.configs(st.get_trials())
    assert not asha.rung_open(by_dir, 1, 3, more_trials=False)        # budget spent, but one may still arrive
    running.report(0.05, 1)
    by_dir = asha.configs(st.get_trials())
    assert asha.rung_open(by_dir, 1, 3, more_trials=True)             # 9 reached it
    assert asha.promotable(by_dir, 1, 3, True, True) == ["trials/t7", "trials/t6", "trials/t5"]
    st.tell(running, state=optuna.trial.TrialState.FAIL)
    for i in range(8, 10):
        paused(st, f"t{i}", {1: 0.01})
    assert not asha.rung_open(asha.configs(st.get_trials()), 3, 3, more_trials=True)   # nobody at 3


@pytest.mark.parametrize("budget, promoted", [({"trials": 9}, True), ({"gpu_hours": 0.5}, False)])
def test_promotions_go_on_after_a_trial_budget_but_not_after_a_gpu_hours_one(tmp_path, budget, promoted):
    """A trial budget counts configurations (continuations are free); GPU-hours are spent by continuations too."""
    from hpcnn.tune.trials import next_trial

    s = search_from_dict({"overrides": ["data.source=digits", "train.epochs=9"],
                          "space": {"optim.lr": {"type": "float", "low": 1e-4, "high": 0.1, "log": True}},
                          "budget": budget, "pruner": {"name": "asha", "min_epochs": 1, "reduction_factor": 3}})
    st = study()
    for i in range(9):  # 9 configurations, 0.5 GPU-hours
        paused(st, f"t{i}", {1: 0.1 * i}, hours=0.5 if i == 0 else 0.0)
        (tmp_path / "trials" / f"t{i}").mkdir(parents=True)
    trial, resumed = next_trial(st, s, tmp_path, "w")
    if promoted:
        assert trial.user_attrs["continues"] == 8 and trial.user_attrs["run_dir"] == "trials/t8" and not resumed
    else:
        assert trial is None and not st.get_trials(states=(optuna.trial.TrialState.WAITING,))
