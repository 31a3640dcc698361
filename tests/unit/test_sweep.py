"""Sweeps: expansion, strict validation, array splitting, ranking of results."""
from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from hpcnn.config import load_job, parse_override
from hpcnn.errors import ConfigError
from hpcnn.slurm.jobs.groups import plan_array
from hpcnn.slurm.jobs.results import format_table, rank_rows
from hpcnn.slurm.jobs.status import TaskStatus
from hpcnn.slurm.jobs.sweep import chunks, expand, load_sweep, override_text, sweep_from_dict

from tests.helpers import REPO


def write_sweep(tmp_path, data, name="sweep.yaml"):
    path = tmp_path / name
    path.write_text(yaml.safe_dump(data))
    return path


def test_grid_is_a_cartesian_product_first_key_slowest(tmp_path):
    spec = sweep_from_dict({"grid": {"optim.lr": [0.001, 0.01], "model.dropout": [0.1, 0.2, 0.3]}})
    base, tasks = expand(spec)
    assert len(tasks) == 6 and [t.index for t in tasks] == list(range(6))
    assert tasks[0].overrides == ["optim.lr=0.001", "model.dropout=0.1"]
    assert tasks[5].overrides == ["optim.lr=0.01", "model.dropout=0.3"]
    assert (tasks[4].config.optim.lr, tasks[4].config.model.dropout) == (0.01, 0.2)
    assert base.optim.lr == load_job(None).optim.lr  # the base itself is not varied


@pytest.mark.parametrize("value", [1e-5, 0.003, 7, True, None, "adamw", [8, 16], "a b: c"])
def test_override_text_reads_back_to_the_same_value(value):
    key, parsed = parse_override(override_text("k", value))
    assert (key, parsed) == ("k", value)


def test_list_values_in_grid(tmp_path):
    _, tasks = expand(sweep_from_dict({"grid": {"model.channels": [[8, 16], [16, 32, 64]]}}))
    assert [t.config.model.channels for t in tasks] == [[8, 16], [16, 32, 64]]


def test_explicit_runs_and_sweep_wide_settings(tmp_path):
    base = tmp_path / "base.yaml"
    base.write_text("name: mybase\ntrain: {epochs: 3}\n")
    path = write_sweep(tmp_path, {"base": "base.yaml", "overrides": ["train.batch_size=32"],
                                  "slurm": {"time": "00:10:00", "gpus_per_node": 0},
                                  "runs": [["optim.lr=0.1"], ["optim.lr=0.2", "optim.name=sgd"]]})
    spec = load_sweep(path)
    assert spec.name == "sweep"  # from the file name
    base_cfg, tasks = expand(spec)
    assert base_cfg.name == "mybase" and base_cfg.slurm.time == "00:10:00"
    assert [(t.config.optim.lr, t.config.optim.name, t.config.train.batch_size, t.config.train.epochs)
            for t in tasks] == [(0.1, "adamw", 32, 3), (0.2, "sgd", 32, 3)]


@pytest.mark.parametrize("data, message", [
    ({"grid": {"optim.lr": [1]}, "runs": [["optim.lr=1"]]}, "either 'grid' or 'runs'"),
    ({}, "needs 'grid'"),
    ({"grid": {"slurm.nodes": [1, 2]}}, "share one array request"),
    ({"runs": [["slurm.time=1"]]}, "share one array request"),
    ({"grid": {"optim.lr": []}}, "non-empty list"),
    ({"grid": {"optim.lr": 0.1}}, "non-empty list"),
    ({"runs": ["optim.lr=0.1"]}, "must be a list of key.sub=value"),
    ({"grid": {"optim.lr": [1]}, "max_paralel": 2}, "did you mean 'max_parallel'"),
    ({"grid": {"optim.lr": [1]}, "slurm": {"gpus": 1}}, "unknown key 'slurm.gpus'"),
    ({"grid": {"optim.lr": [1]}, "max_parallel": 0}, "'max_parallel' must be >= 1"),
    ({"grid": {"optim.lr": [1]}, "mode": "best"}, "'mode' must be max or min"),
    ({"grid": {"optim.lr": [1]}, "metric": ""}, "'metric' must be a dotted summary.json key"),
    ({"grid": {"optim.lr": [1]}, "metric": 3}, "'metric' must be a string"),
])
def test_invalid_sweeps_are_named(tmp_path, data, message):
    with pytest.raises(ConfigError) as err:
        load_sweep(write_sweep(tmp_path, data))
    assert message in str(err.value) and "sweep.yaml" in str(err.value)


def test_bad_task_value_names_the_task_and_key(tmp_path):
    spec = load_sweep(write_sweep(tmp_path, {"grid": {"optim.lr": [0.1, -1.0]}}))
    with pytest.raises(ConfigError) as err:
        expand(spec)
    text = str(err.value)
    assert "optim.lr" in text and "task 1" in text and "optim.lr=-1.0" in text


def test_typo_in_a_grid_key_fails_before_submission(tmp_path):
    with pytest.raises(ConfigError, match="did you mean 'optim.lr'"):
        expand(sweep_from_dict({"grid": {"optim.lrr": [0.1]}}))


def test_chunks_respect_max_array_size_and_start_at_zero():
    assert chunks(2500, 1000) == [(0, 1000), (1000, 1000), (2000, 500)]
    assert chunks(3, 1001) == [(0, 3)]
    assert chunks(5, 2) == [(0, 2), (2, 2), (4, 1)]


def test_plan_splits_large_sweeps_into_arrays_indexed_from_zero(tmp_path):
    spec = {"grid": {"optim.lr": [0.1, 0.2, 0.3, 0.4, 0.5]}, "overrides": [f"train.runs_dir={tmp_path / 'runs'}"]}
    plan = plan_array(sweep_from_dict(spec), profile="local", max_parallel=2, max_array_size=2,
                      python="/usr/bin/python3")
    assert plan.chunks == [(0, 2), (2, 2), (4, 1)]
    arrays = [next(ln for ln in s.splitlines() if ln.startswith("#SBATCH --array=")) for s in plan.scripts]
    assert arrays == ["#SBATCH --array=0-1%2", "#SBATCH --array=0-1%2", "#SBATCH --array=0-0%1"]
    assert "--dependency" not in plan.scripts[0] and "#SBATCH --dependency=" in plan.scripts[1]
    assert plan.resources.job_name == "hpcnn-sweep"


def test_shipped_example_sweep_expands():
    spec = load_sweep(REPO / "jobs" / "sweep_lr.yaml")
    _, tasks = expand(spec)
    assert len(tasks) == 6 and spec.max_parallel == 4
    assert {t.config.train.epochs for t in tasks} == {6}


def status(index, state, val=None, summary_status="completed", reason=""):
    summary = None if val is None else {"status": summary_status, "metrics": {"val": {"accuracy": val}}}
    return TaskStatus(f"7_{index}", state, Path(f"/r/task-{index}"), summary=summary, reason=reason, index=index,
                      overrides=[f"optim.lr={index}"])


def test_results_rank_best_first_then_unfinished_then_failures():
    rows = rank_rows([status(0, "COMPLETED", 0.5), status(1, "FAILED", reason="FAILED: boom"),
                      status(2, "COMPLETED", 0.9), status(3, "RUNNING"), status(4, "COMPLETED", 0.7)])
    assert [(r["index"], r["rank"]) for r in rows] == [(2, 1), (4, 2), (0, 3), (3, None), (1, None)]
    low = rank_rows([status(0, "COMPLETED", 0.5), status(1, "COMPLETED", 0.2)], mode="min")
    assert [r["index"] for r in low] == [1, 0]
    table = format_table(rows)
    assert table.splitlines()[1].startswith("1 ") and "<- FAILED: boom" in table.splitlines()[-1]


def test_finished_without_metric_is_a_failure_with_reason():
    rows = rank_rows([status(0, "CANCELLED", reason="CANCELLED (exit 0:15): by user")])
    assert rows[0]["rank"] is None and "CANCELLED" in rows[0]["reason"]


# ---------------------------------------------------------------- issue 20: big sweeps, resubmission, status

def _counting(monkeypatch, module, calls: list):
    real = module.from_dict

    def counted(*args, **kwargs):
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(module, "from_dict", counted)


def test_large_grid_checks_each_override_against_the_base_not_every_task_in_full(monkeypatch):
    from hpcnn.slurm.jobs import sweep, task_checks

    calls: list = []
    _counting(monkeypatch, sweep, calls)
    _counting(monkeypatch, task_checks, calls)
    spec = sweep_from_dict({"grid": {"optim.lr": [round(1e-4 * (i + 1), 6) for i in range(500)],
                                     "model.dropout": [0.0, 0.1, 0.2, 0.3]}})
    base, tasks = expand(spec)
    assert len(tasks) == 2000 and len(calls) == 1, "the base is loaded once; plain overrides are type/range checked"
    assert tasks[1999].config.optim.lr == 0.05 and tasks[1999].config.model.dropout == 0.3  # built when asked


def test_every_bad_override_of_a_grid_is_reported_at_once_with_its_task():
    spec = sweep_from_dict({"grid": {"optim.lr": [0.1, -1.0], "model.dropout": [0.1, 2.0]}})
    with pytest.raises(ConfigError) as err:
        expand(spec)
    text = str(err.value)
    assert "optim.lr" in text and "model.dropout" in text and "task 1" in text and "2.0" in text


def test_overrides_read_by_rules_across_keys_are_checked_with_the_base(tmp_path):
    with pytest.raises(ConfigError, match="data.root"):  # data.source folder needs data.root: a cross-key rule
        expand(sweep_from_dict({"runs": [["optim.lr=0.1"], ["data.source=folder"]]}))
    with pytest.raises(ConfigError, match="must be a number"):
        expand(sweep_from_dict({"runs": [["optim.lr=fast"]]}))
    _, tasks = expand(sweep_from_dict({"runs": [["data.source=digits", "model.name=simple_cnn"]]}))
    assert tasks[0].config.data.source == "digits"


def test_array_index_spec_names_exactly_the_tasks():
    from hpcnn.slurm.jobs.executor import index_spec, with_indices

    assert index_spec([3, 7, 12]) == "3,7,12"
    assert index_spec([0, 1, 2, 3, 7, 9, 10], max_parallel=2) == "0-3,7,9-10%2"
    script = "#!/bin/bash\n#SBATCH --array=0-2\n#SBATCH --time=5\n"
    assert with_indices(script, [3, 7, 12], 4) == "#!/bin/bash\n#SBATCH --array=3,7,12%3\n#SBATCH --time=5\n"


def test_status_prefers_the_live_queue_and_says_so(tmp_path, capsys):
    from hpcnn.cli.jobs import _print_status
    from hpcnn.slurm.jobs.status import ACCOUNTING, LIVE, make_status, prefer_live
    from hpcnn.slurm.site.commands import JobState

    accounted = {"5": JobState("5", "PENDING", reason="Priority"), "6": JobState("6", "COMPLETED", "0:0")}
    states = prefer_live(accounted, {"5": JobState("5", "RUNNING", nodes="n1")})
    assert states["5"].state == "RUNNING" and states.source == {"5": LIVE, "6": ACCOUNTING}
    status = make_status("5", tmp_path, states["5"], tmp_path / "err", source=states.source["5"])
    _print_status(status, False)
    out = capsys.readouterr().out
    assert out.startswith("job 5: RUNNING (from squeue (live queue))") and status.to_dict()["state_source"] == LIVE


def test_status_without_arguments_lists_a_unit_once_however_many_arrays(tmp_path, monkeypatch):
    import json

    from hpcnn.cli.jobs import _recent_units
    from hpcnn.slurm.jobs import records

    monkeypatch.setenv("HPCNN_STATE_DIR", str(tmp_path / "state"))
    unit = tmp_path / "group-scale-x"
    unit.mkdir()
    arrays = [{"job_id": str(j), "offset": 0, "count": 1, "tasks": [i]} for i, j in enumerate((41, 42, 43))]
    tasks = [{"index": i, "job_id": f"{4 + i}1_0", "run_dir": f"task-00{i}", "overrides": []} for i in range(3)]
    (unit / "sweep.json").write_text(json.dumps({"kind": "group", "name": "scale-x", "arrays": arrays,
                                                 "tasks": tasks}))
    for a in arrays:
        records.register(a["job_id"], unit)
    found = _recent_units(20)
    assert len(found) == 1 and found[0].array_ids == ["41", "42", "43"]


def test_a_task_neither_queue_nor_accounting_knows_is_gone_not_waited_for(tmp_path):
    from hpcnn.slurm.jobs.status import NOWHERE, make_status, prefer_live
    from hpcnn.slurm.site.commands import JobState

    # what the local Slurm answers for an array whose task 2 was cancelled while pending: no row for it at all
    states = prefer_live({"16_0": JobState("16_0", "COMPLETED", "0:0")}, {}, asked=["16"],
                         expected=["16", "16_0", "16_2"])
    assert states.gone == {"16_2"}
    status = make_status("16_2", tmp_path, None, tmp_path / "err", gone=True)
    assert status.finished and not status.succeeded and status.source == NOWHERE and "neither" in status.reason
    assert not make_status("17_0", tmp_path, None, tmp_path / "err").finished  # not asked: not known to be gone


def test_sweep_on_a_directory_resubmits_and_refuses_what_it_cannot(tmp_path, capsys):
    import json

    from hpcnn.cli import main

    group = tmp_path / "group-x"
    group.mkdir()
    (group / "sweep.json").write_text(json.dumps({"kind": "predict", "name": "x", "arrays": [], "tasks": []}))
    assert main(["sweep", str(group)]) != 0
    assert "hpcnn predict --resubmit" in capsys.readouterr().err
    assert main(["sweep", str(group), "optim.lr=0.1"]) != 0
    assert "cannot change a submitted sweep" in capsys.readouterr().err
    assert main(["sweep", str(tmp_path)]) != 0  # a folder that is no sweep at all
    assert "not a sweep directory" in capsys.readouterr().err


def test_a_task_row_beats_the_range_row_a_cancelled_pending_task_leaves():
    from hpcnn.slurm.site.commands import parse_sacct

    # sacct on the local Slurm after `scancel 53_2` while 53_2 waited behind a %2 throttle
    text = ("53_0|RUNNING|0:0|00:00:10|n1|2026-12-07T02:55:46\n53_1|RUNNING|0:0|00:00:10|n2|2026-12-07T02:55:46\n"
            "53_[0-2%2]|CANCELLED by 0|0:0|00:00:00|None assigned|2026-12-07T02:55:46\n")
    states = parse_sacct(text)
    assert [states[j].state for j in ("53_0", "53_1", "53_2")] == ["RUNNING", "RUNNING", "CANCELLED"]
    reordered = parse_sacct("\n".join(reversed(text.splitlines())))
    assert [reordered[j].state for j in ("53_0", "53_1", "53_2")] == ["RUNNING", "RUNNING", "CANCELLED"]
