"""`hpcnn runs` lists real run directories; `hpcnn runs rm` removes only finished hpcnn runs, and asks first."""
from __future__ import annotations

import json
import os
import time

import pytest

from hpcnn import results
from hpcnn.cli import main
from hpcnn.errors import HpcnnError
from hpcnn.runlist import list_runs, parse_age


def finished_run(runs, name, best=0.8, age_s=0.0):
    path = runs / name
    path.mkdir(parents=True)
    (path / "config.resolved.yaml").write_text("name: x\n")
    results.write_summary(path, results.make_summary(name="x", status="completed", monitor={"metric": "val.accuracy",
                                                                                            "best": best}))
    (path / "model.pt").write_bytes(b"\0" * 4096)
    old = time.time() - age_s
    for child in path.iterdir():
        os.utime(child, (old, old))
    return path


@pytest.fixture
def runs(tmp_path):
    root = tmp_path / "runs"
    finished_run(root, "old-run", 0.7, age_s=10 * 86400)
    finished_run(root, "new-run", 0.9)
    busy = root / "busy-run"  # no summary yet, progress just written: still training
    busy.mkdir()
    (busy / "config.resolved.yaml").write_text("name: y\n")
    (busy / "progress.json").write_text("{}")
    (root / "notes").mkdir()  # not made by hpcnn
    (root / "notes" / "todo.txt").write_text("keep me")
    return root


def test_runs_lists_hpcnn_runs_with_status_metric_age_size(runs, capsys):
    assert main(["runs", str(runs), "--json"]) == 0
    rows = {r["name"]: r for r in json.loads(capsys.readouterr().out)}
    assert set(rows) == {"old-run", "new-run", "busy-run"}
    assert rows["new-run"]["status"] == "completed" and rows["new-run"]["value"] == 0.9
    assert rows["new-run"]["metric"] == "val.accuracy" and rows["new-run"]["size_bytes"] >= 4096
    assert rows["old-run"]["age_s"] > 9 * 86400 and rows["busy-run"]["status"] == "no summary"
    assert main(["runs", str(runs)]) == 0
    table = capsys.readouterr().out.splitlines()
    assert table[0].split() == ["run", "kind", "status", "metric", "best", "age", "size"]
    assert table[1].startswith("busy-run") or table[1].startswith("new-run")  # newest first


def test_rm_removes_only_finished_runs_and_keeps_the_rest(runs, capsys):
    code = main(["runs", "rm", str(runs / "new-run"), str(runs / "busy-run"), str(runs / "notes"), "--yes"])
    assert code == 1  # something was kept, and said why
    err = capsys.readouterr().err
    assert "busy-run: no final summary" in err and "not an hpcnn run directory" in err
    assert not (runs / "new-run").exists()
    assert (runs / "busy-run").is_dir() and (runs / "notes" / "todo.txt").is_file()


def test_rm_refuses_the_runs_folder_itself(runs, capsys):
    assert main(["runs", "rm", str(runs), "--yes"]) == 1
    assert "not an hpcnn run directory" in capsys.readouterr().err
    assert {r.name for r in list_runs(runs)} == {"old-run", "new-run", "busy-run"}


def test_rm_older_than_needs_yes_without_a_terminal(runs, capsys, monkeypatch):
    monkeypatch.setattr("sys.stdin.isatty", lambda: False)
    assert main(["runs", "rm", "--older-than", "7d", str(runs)]) != 0
    assert "without confirmation" in capsys.readouterr().err and (runs / "old-run").is_dir()
    assert main(["runs", "rm", "--older-than", "7d", str(runs), "--yes"]) == 0
    assert not (runs / "old-run").exists()
    assert {r.name for r in list_runs(runs)} == {"busy-run", "new-run"}


def test_ages_are_read_as_a_user_writes_them():
    assert parse_age("7d") == 7 * 86400 and parse_age("12h") == 43200 and parse_age("2w") == 14 * 86400
    with pytest.raises(HpcnnError, match="7d, 12h"):
        parse_age("last week")


def test_rm_keeps_a_run_whose_lock_a_live_process_holds(runs, capsys):
    from hpcnn.rundir_lock import hold_run_dir

    with hold_run_dir(runs / "old-run", heartbeat_s=3600):  # this process trains in it (a real lock)
        assert main(["runs", "rm", str(runs / "old-run"), "--yes"]) == 1
        assert "lock is held by host" in capsys.readouterr().err and (runs / "old-run").is_dir()
    assert main(["runs", "rm", str(runs / "old-run"), "--yes"]) == 0  # released: now it may go
    assert not (runs / "old-run").exists()
