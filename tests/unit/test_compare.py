"""hpcnn compare's pieces: which config keys differ, how runs are named, found and tabulated (no torch)."""
from __future__ import annotations

import json
import subprocess

import pytest
import yaml

from hpcnn.compare import collect, comparison, curve, describe, differing_keys, flatten, format_table, monitored_metric
from hpcnn.errors import HpcnnError
from tests.helpers import PYTHON, REPO

BASE = {"name": "exp", "seed": 0, "model": {"name": "simple_cnn", "channels": [8, 16], "dropout": 0.3},
        "optim": {"name": "adamw", "lr": 0.003, "betas": [0.9, 0.999]},
        "train": {"epochs": 2, "runs_dir": "runs", "early_stopping": {"metric": "val.accuracy"}},
        "slurm": {"extra_sbatch": {}}, "phases": []}


def variant(**changes) -> dict:
    """BASE with dotted keys changed (None deletes the key)."""
    cfg = json.loads(json.dumps(BASE))
    for dotted, value in changes.items():
        *parents, last = dotted.split("__")
        node = cfg
        for part in parents:
            node = node[part]
        if value is None:
            del node[last]
        else:
            node[last] = value
    return cfg


def test_flatten_keeps_lists_and_empty_sections_as_values_in_config_order():
    flat = flatten(BASE)
    assert list(flat)[:5] == ["name", "seed", "model.name", "model.channels", "model.dropout"]
    assert flat["model.channels"] == [8, 16] and flat["slurm.extra_sbatch"] == {} and flat["phases"] == []


def test_identical_configs_differ_in_nothing():
    assert differing_keys([BASE, variant(), variant()]) == []


def test_the_keys_that_differ_in_any_pair_in_config_order():
    configs = [variant(), variant(optim__lr=0.03), variant(model__dropout=0.1, optim__lr=0.03)]
    assert differing_keys(configs) == ["model.dropout", "optim.lr"]


def test_lists_compare_whole_and_a_missing_key_counts_as_different():
    assert differing_keys([variant(), variant(model__channels=[8, 32])]) == ["model.channels"]
    assert differing_keys([variant(), variant(optim__betas=[0.9, 0.999])]) == []
    assert differing_keys([variant(), variant(seed=None)]) == ["seed"]
    assert differing_keys([variant(), variant(phases=[{"name": "head"}])]) == ["phases"]


def test_where_runs_go_is_not_a_difference_and_unknown_configs_are_left_out():
    assert differing_keys([variant(), variant(train__runs_dir="/scratch/me")]) == []
    assert differing_keys([variant(), None, variant(optim__lr=0.1)]) == ["optim.lr"]
    assert differing_keys([variant(optim__lr=0.1), None]) == []  # one known config: nothing to compare


def test_describe_writes_values_as_overrides():
    cfg = variant(optim__lr=0.03, model__channels=[8, 32], optim__name="sgd")
    assert describe(cfg, ["optim.lr", "model.channels", "optim.name"]) == \
        "optim.lr=0.03 model.channels=[8,32] optim.name=sgd"
    assert describe(variant(seed=None), ["seed", "train.early_stopping.metric"]) == \
        "seed=- train.early_stopping.metric=val.accuracy"


def test_curve_reads_dotted_keys_of_the_epoch_records_and_skips_gaps():
    history = [{"epoch": 0, "val": {"accuracy": 0.5}}, {"epoch": 1, "val": {"accuracy": float("nan")}},
               {"epoch": 2, "val": {"accuracy": 0.7}, "train": {"loss": 1.0}}]
    assert curve(history, "val.accuracy") == ([1, 3], [0.5, 0.7])
    assert curve(history, "train.loss") == ([3], [1.0])
    assert curve(history, "val.nothing") == ([], [])


def write_run(path, config, epochs=2, status="completed", accuracy=0.8):
    path.mkdir(parents=True)
    (path / "config.resolved.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    lines = [{"epoch": e, "train": {"loss": 2.0 - e}, "val": {"loss": 2.1 - e, "accuracy": accuracy * (e + 1) / epochs}}
             for e in range(epochs)]
    (path / "metrics.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines) + '{"epoch": 9, "va')
    if status:
        (path / "summary.json").write_text(json.dumps({"status": status, "best_epoch": epochs,
                                                       "monitor": {"metric": "val.accuracy"},
                                                       "metrics": {"val": {"accuracy": accuracy, "loss": 0.5},
                                                                   "test": {"accuracy": accuracy - 0.01}},
                                                       "wall_seconds": 12.345}))
    return path


def test_runs_are_labelled_by_what_differs_and_twins_by_their_directory(tmp_path):
    a = write_run(tmp_path / "a", variant())
    b = write_run(tmp_path / "b", variant(optim__lr=0.03), accuracy=0.9)
    c = write_run(tmp_path / "c", variant(optim__lr=0.03), status=None)  # still running
    runs, keys = collect([a, b, c])
    assert keys == ["optim.lr"]
    assert [r.label for r in runs] == ["optim.lr=0.003", "optim.lr=0.03 (b)", "optim.lr=0.03 (c)"]
    assert [r.state for r in runs] == ["completed", "completed", "running"]
    assert [len(r.history) for r in runs] == [2, 2, 2]  # the half-written line is skipped
    assert monitored_metric(runs) == "val.accuracy"
    rows = comparison(runs, keys, "val.accuracy")
    assert rows[1]["config"] == {"optim.lr": 0.03} and rows[1]["metrics"]["val.accuracy"] == 0.9
    assert rows[2]["metrics"]["test.accuracy"] is None
    table = format_table(rows, keys, "val.accuracy").splitlines()
    assert table[0].split() == ["run", "optim.lr", "state", "epochs", "val.accuracy", "val.loss", "test.accuracy",
                                "wall_seconds"]
    assert table[2].split() == ["b", "0.03", "completed", "2", "0.9000", "0.5000", "0.8900", "12.3"]
    assert table[3].split()[:3] == ["c", "0.03", "running"] and table[3].split()[4:] == ["-"] * 4


def test_clear_errors_for_a_directory_that_is_no_run_and_for_runs_without_metrics(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(HpcnnError, match="not a run or sweep directory"):
        collect([tmp_path / "empty"])
    with pytest.raises(HpcnnError, match="no such directory"):
        collect([tmp_path / "missing"])
    started = tmp_path / "started"
    started.mkdir()
    (started / "config.resolved.yaml").write_text(yaml.safe_dump(variant()))
    with pytest.raises(HpcnnError, match="none of these runs has metrics yet"):
        collect([started])


def test_compare_never_imports_torch():
    code = ("import argparse, sys, hpcnn.compare, hpcnn.compare.plot, hpcnn.cli.compare; "
            "hpcnn.cli.compare.register(argparse.ArgumentParser().add_subparsers()); "
            "assert 'torch' not in sys.modules, 'torch imported'")
    proc = subprocess.run([PYTHON, "-c", code], capture_output=True, text=True, timeout=120, cwd=REPO)
    assert proc.returncode == 0, proc.stderr
