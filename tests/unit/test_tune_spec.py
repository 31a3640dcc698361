"""Search files (hpcnn tune): read strictly, every bad case named by its key on the login node, nothing queued."""
from __future__ import annotations

import textwrap

import pytest

from hpcnn.errors import ConfigError
from hpcnn.tune import space as space_mod
from hpcnn.tune.spec import from_record, load_search, to_record

from tests.helpers import TINY, run_hpcnn

GOOD_SPACE = """\
  optim.lr: {type: float, low: 1.0e-4, high: 0.1, log: true}
  optim.weight_decay: {type: float, low: 1.0e-6, high: 1.0e-2, log: true}
  model.dropout: {type: float, low: 0.0, high: 0.5}
  train.batch_size: {type: categorical, choices: [32, 64, 128]}
  optim.name: {type: categorical, choices: [sgd, adamw]}
  optim.momentum: {type: float, low: 0.8, high: 0.99, when: {optim.name: sgd}}
"""


def search_file(tmp_path, space: str = GOOD_SPACE, extra: str = "budget: {trials: 4}\n"):
    overrides = ", ".join(f'"{o}"' for o in TINY + [f"train.runs_dir={tmp_path / 'runs'}"])
    path = tmp_path / "search.yaml"
    path.write_text(f"name: s\noverrides: [{overrides}]\nspace:\n{space}{extra}")
    return path


def test_a_good_search_file_loads_with_defaults_from_the_job(tmp_path):
    search = load_search(search_file(tmp_path))
    assert (search.metric, search.direction) == ("val.accuracy", "maximize")  # train.early_stopping's
    assert search.spec.sampler.name == "tpe" and search.spec.pruner.name == "asha"
    assert search.space["optim.momentum"].when == {"optim.name": "sgd"}
    assert search.base.data.source == "digits"
    again = from_record(to_record(search), "record")  # what workers rebuild from search.json
    assert again.space == search.space and again.base == search.base


def test_the_monitored_metric_and_its_mode_are_the_default(tmp_path):
    path = search_file(tmp_path)
    monitor = '"train.early_stopping.metric=val.loss", "train.early_stopping.mode=min"'
    path.write_text(path.read_text().replace('train.threads=1"', f'train.threads=1", {monitor}'))
    search = load_search(path)
    assert (search.metric, search.direction) == ("val.loss", "minimize")


BAD = {
    "unknown key": ("  optim.lrr: {type: float, low: 0.001, high: 0.1}\n", "space.optim.lrr",
                    "did you mean 'optim.lr'"),
    "unknown field": ("  optim.lr: {type: float, lo: 0.001, high: 0.1}\n", "space.optim.lr.lo", "space.optim.lr.low"),
    "empty range": ("  optim.lr: {type: float, low: 0.1, high: 0.001}\n", "space.optim.lr", "empty range"),
    "log over zero": ("  optim.lr: {type: float, low: 0.0, high: 0.1, log: true}\n", "space.optim.lr", "low > 0"),
    "log below zero": ("  optim.weight_decay: {type: float, low: -1.0, high: 0.1, log: true}\n",
                       "space.optim.weight_decay", "low > 0"),
    "categorical value the schema rejects": ("  optim.name: {type: categorical, choices: [sgd, lion]}\n",
                                             "space.optim.name value 'lion'", "sgd, adam, adamw or rmsprop"),
    "bound the schema rejects": ("  model.dropout: {type: float, low: 0.0, high: 1.5}\n",
                                 "space.model.dropout value 1.5", "must be in [0, 1)"),
    "wrong type": ("  train.batch_size: {type: categorical, choices: [32, big]}\n",
                   "space.train.batch_size value 'big'", "must be an integer"),
    "condition on a key not in the space": ("  optim.momentum: {type: float, low: 0.8, high: 0.9, "
                                            "when: {optim.name: sgd}}\n", "space.optim.momentum.when", "categorical"),
    "slurm key": ("  slurm.nodes: {type: int, low: 1, high: 2}\n", "space.slurm.nodes", "workers.slurm"),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_a_bad_search_file_fails_naming_the_key(tmp_path, case):
    space, key, words = BAD[case]
    with pytest.raises(ConfigError) as err:
        load_search(search_file(tmp_path, space))
    assert key in str(err.value) and words in str(err.value)


@pytest.mark.parametrize("extra, words", [
    ("budget: {}\n", "'budget' needs trials and/or gpu_hours"),
    ("budget: {trials: 4}\nsampler: {name: cmaes}\n", "'sampler.name' must be one of tpe, random, grid"),
    ("budget: {trials: 4}\npruner: {name: hband}\n", "'pruner.name' must be one of asha, hyperband, median, none"),
    ("budget: {trials: 4}\nworkers: {count: 2, slurm: {gpus: 1}}\n", "unknown key 'workers.slurm.gpus'"),
    ("budget: {trials: 4}\nmetric: train.loss\n", "'metric' must be a validation metric"),
    ("budget: {trials: 4}\nsampler: {name: grid}\n", "the grid sampler"),
])
def test_bad_search_settings_are_named(tmp_path, extra, words):
    with pytest.raises(ConfigError, match=None) as err:
        load_search(search_file(tmp_path, extra=extra))
    assert words in str(err.value)


@pytest.mark.parametrize("name, kind", [("asha", "NopPruner"), ("hyperband", "HyperbandPruner"),
                                        ("median", "MedianPruner"), ("none", "NopPruner")])
def test_each_pruner_name_builds_that_pruner_with_the_files_settings(tmp_path, name, kind):
    from hpcnn.tune.study import pruner, sampler

    search = load_search(search_file(tmp_path, extra=f"budget: {{trials: 4}}\n"
                                                     f"pruner: {{name: {name}, min_epochs: 2, reduction_factor: 4}}\n"))
    built = pruner(search)
    assert type(built).__name__ == kind  # asha: hpcnn pauses and promotes trials itself (test_tune_asha.py)
    if name == "hyperband":
        assert (built._min_resource, built._reduction_factor) == (2, 4)
    assert sampler(search, 0)._constant_liar  # K workers: a running trial counts as a poor one


def test_several_mistakes_are_reported_at_once(tmp_path):
    space = ("  optim.lr: {type: float, low: 0.1, high: 0.001}\n"
             "  model.dropout: {type: float, low: 0.0, high: 0.5, log: true}\n")
    with pytest.raises(ConfigError) as err:
        load_search(search_file(tmp_path, space))
    message = str(err.value)
    assert "2 errors" in message and "space.optim.lr" in message and "space.model.dropout" in message


def test_sampling_follows_conditions_and_types():
    import optuna

    space = space_mod.parse_space({"optim.name": {"type": "categorical", "choices": ["sgd", "adamw"]},
                                   "optim.momentum": {"type": "float", "low": 0.8, "high": 0.9,
                                                      "when": {"optim.name": "sgd"}},
                                   "train.batch_size": {"type": "int", "low": 16, "high": 64, "step": 16}}, "t")
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=1))
    seen = set()
    for _ in range(12):
        overrides = dict(o.split("=", 1) for o in space_mod.suggest(study.ask(), space))
        assert ("optim.momentum" in overrides) == (overrides["optim.name"] == '"sgd"')
        assert int(overrides["train.batch_size"]) in (16, 32, 48, 64)
        seen.add(overrides["optim.name"])
    assert seen == {'"sgd"', '"adamw"'}


def test_the_cli_reports_a_bad_search_in_one_line_and_queues_nothing(tmp_path):
    path = search_file(tmp_path, "  optim.name: {type: categorical, choices: [sgd, lion]}\n")
    proc = run_hpcnn("tune", str(path), "--profile", "local", "--dry-run", timeout=120)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.startswith("error: ") and "space.optim.name value 'lion'" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not list(tmp_path.glob("runs/tune-*"))  # no search directory, nothing queued


def test_dry_run_renders_one_array_of_workers(tmp_path):
    path = search_file(tmp_path, extra="budget: {trials: 4}\nworkers: {count: 3}\n")
    proc = run_hpcnn("tune", str(path), "--profile", "local", "--dry-run", timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "#SBATCH --array=0-2" in proc.stdout and "3 worker(s)" in proc.stdout
    assert not list(tmp_path.glob("runs/tune-*"))


def test_the_search_file_docs_example_loads(tmp_path):
    """The worked example of docs/tuning.md is a valid search file (its job, digits, is built in)."""
    from tests.helpers import REPO

    text = (REPO / "docs" / "tuning.md").read_text()
    block = text.split("```yaml\n", 1)[1].split("```", 1)[0]
    path = tmp_path / "tune_digits.yaml"
    path.write_text(textwrap.dedent(block).replace("runs_dir=runs", f"runs_dir={tmp_path / 'runs'}"))
    search = load_search(path)
    assert set(search.space) >= {"optim.lr", "optim.weight_decay", "model.dropout", "train.batch_size"}


def test_a_search_directory_given_again_plans_more_workers_on_the_same_study(tmp_path):
    from hpcnn.tune.submit import plan_tune, prepare

    search = load_search(search_file(tmp_path))
    search_dir = tmp_path / "runs" / "tune-s-again"
    prepare(search, search_dir)
    plan = plan_tune(search_dir, "local", workers=3)
    assert plan.existing and plan.search_dir == search_dir.absolute() and plan.workers == 3
    assert plan.search.space == search.space and "#SBATCH --array=0-2" in plan.script


def test_the_budget_counts_finished_and_running_trials_and_gpu_hours(tmp_path):
    import optuna
    from optuna.trial import TrialState, create_trial

    from hpcnn.tune.trials import budget_spent

    path = search_file(tmp_path, extra="budget: {trials: 3, gpu_hours: 1.0}\n")
    search = load_search(path)

    def trial(state, hours=0.0, **attrs):
        return create_trial(state=state, value=0.5 if state == TrialState.COMPLETE else None,
                            user_attrs={"device_hours": hours, **attrs})

    assert not budget_spent(search, [trial(TrialState.COMPLETE), trial(TrialState.FAIL), trial(TrialState.PRUNED)])
    assert budget_spent(search, [trial(TrialState.COMPLETE), trial(TrialState.RUNNING), trial(TrialState.PRUNED)])
    assert not budget_spent(search, [trial(TrialState.COMPLETE), trial(TrialState.FAIL, over_budget=True),
                                     trial(TrialState.COMPLETE, over_budget=True)])
    assert budget_spent(search, [trial(TrialState.COMPLETE, 0.6), trial(TrialState.PRUNED, 0.5)])
    assert optuna.__version__ >= "5.1"
