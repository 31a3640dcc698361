"""The example jobs outside the checkout: `hpcnn examples [--copy DIR]` and the jobs/NAME.yaml fallback."""
from __future__ import annotations

import pytest

from hpcnn.cli import main
from hpcnn.config import examples, load_job
from hpcnn.errors import ConfigError
from hpcnn.slurm.jobs.sweep import load_sweep

from tests.helpers import REPO


@pytest.fixture
def elsewhere(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(examples, "_NOTED", set())
    return tmp_path


def test_a_missing_jobs_path_that_names_an_example_reads_it_with_a_note(elsewhere, capsys):
    assert load_job("jobs/mlp_baseline.yaml").name == "mlp_baseline"
    err = capsys.readouterr().err
    assert err.startswith("note: no jobs/mlp_baseline.yaml here; using the shipped example ")
    assert "hpcnn examples --copy jobs" in err
    spec = load_sweep("jobs/lessons/shortcut.yaml")  # a sweep's base is relative to the shipped file
    assert spec.source == str(REPO / "jobs" / "lessons" / "shortcut.yaml")


def test_a_local_file_wins_and_a_missing_one_names_hpcnn_examples(elsewhere, capsys):
    (elsewhere / "jobs").mkdir()
    (elsewhere / "jobs" / "mlp_baseline.yaml").write_text("name: mine\n")
    assert load_job("jobs/mlp_baseline.yaml").name == "mine" and capsys.readouterr().err == ""
    with pytest.raises(ConfigError, match=r"config file not found: jobs/nope.yaml — hint: .*`hpcnn examples`"):
        load_job("jobs/nope.yaml")
    assert examples.shipped_example("../jobs/default.yaml") is None


def test_examples_lists_and_copies_without_overwriting(elsewhere, capsys):
    assert main(["examples"]) == 0
    listed = capsys.readouterr().out
    shipped = sorted(str(p.relative_to(REPO / "jobs")) for p in (REPO / "jobs").rglob("*.yaml"))
    assert [line.split()[0] for line in listed.splitlines()[1:]] == [f"jobs/{name}" for name in shipped]
    assert "jobs/default.yaml" in listed and "jobs/lessons/shortcut.yaml" in listed
    (elsewhere / "mine").mkdir()
    (elsewhere / "mine" / "default.yaml").write_text("name: edited\n")
    assert main(["examples", "--copy", "mine"]) == 0
    assert f"copied {len(shipped) - 1} example job(s) to mine; kept 1 file(s)" in capsys.readouterr().out
    assert (elsewhere / "mine" / "default.yaml").read_text() == "name: edited\n"
    assert (elsewhere / "mine" / "lessons" / "shortcut.yaml").read_text() == (
        REPO / "jobs" / "lessons" / "shortcut.yaml").read_text()
