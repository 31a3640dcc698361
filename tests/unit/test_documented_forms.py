"""Forms the README and docs show: `hpcnn results RUNS_DIR`, `scale model` without --batch, `bench --help`."""
from __future__ import annotations

import json
import re

import pytest

from hpcnn.cli import main
from hpcnn.results import make_summary, write_summary

from tests.helpers import REPO


def _run(root, name, accuracy, wall):
    run_dir = root / name
    run_dir.mkdir(parents=True)
    (run_dir / "config.resolved.yaml").write_text(f"name: {name}\n")
    if accuracy is not None:
        write_summary(run_dir, make_summary(name=name, status="completed", wall_seconds=wall,
                                            metrics={"val": {"accuracy": accuracy}, "test": None}))
    return run_dir


def test_results_of_a_folder_of_runs_ranks_them_and_lists_unfinished_last(tmp_path, capsys):
    runs = tmp_path / "runs"
    _run(runs, "default-a", 0.5, 30.0)
    _run(runs, "default-b", 0.75, 60.0)
    _run(runs, "default-c", None, None)                  # running, or died before the end
    _run(runs / "sweep-lr-x", "task-000", 0.6, 10.0)     # a sweep's task, one level down
    assert main(["results", str(runs)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split()[:5] == ["rank", "task", "job", "state", "val.accuracy"]
    assert [(line.split()[0], line.split()[-1]) for line in lines[1:4]] == [
        ("1", "default-b"), ("2", "sweep-lr-x/task-000"), ("3", "default-a")]
    assert lines[4].split()[0] == "-" and "default-c    <- no summary.json" in lines[4]
    assert main(["results", str(runs), "--metric", "wall_seconds", "--mode", "min", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [r["label"] for r in rows if r["rank"]] == ["sweep-lr-x/task-000", "default-a", "default-b"]


def test_results_of_an_empty_folder_is_one_line(tmp_path, capsys):
    assert main(["results", str(tmp_path)]) == 2
    assert capsys.readouterr().err.startswith("error: no run directories here")


def test_scale_model_says_steps_per_second_without_a_batch(capsys):
    argv = ["scale", "model", "--step-time", "0.064", "--grad-bytes", "102.2e6", "--alpha", "5e-6", "--beta", "2e10",
            "--gpus", "1,8"]
    assert main(argv) == 0
    header, first = capsys.readouterr().out.splitlines()[1:3]
    assert "steps/s" in header and "img/s" not in header
    assert float(first.split()[5]) == pytest.approx(1 / 0.064, abs=0.05)
    assert main(argv + ["--batch", "256"]) == 0
    header, first = capsys.readouterr().out.splitlines()[1:3]
    assert "img/s" in header and float(first.split()[5]) == pytest.approx(256 / 0.064, abs=0.05)


def test_bench_help_examples_name_shipped_jobs(capsys):
    with pytest.raises(SystemExit):
        main(["bench", "--help"])
    named = re.findall(r"jobs/[\w/]+\.yaml", capsys.readouterr().out)
    assert named and all((REPO / name).is_file() or name == "jobs/x.yaml" for name in named), named
