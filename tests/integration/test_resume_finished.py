"""--resume of a finished run, of a run without a checkpoint, and a bad model.weights (issue 20, item 10).

A finished run says it is complete and leaves its results alone unless asked for more epochs; a run
that stopped before its first checkpoint names the command that starts it again (and that command
works); a weights lookup that fails leaves no run directory behind. The CLI runs in this process
(hpcnn.cli.main): what it prints is what a user sees, without a torch import per command.
"""
from __future__ import annotations

import json
import shutil

from hpcnn.cli import main

from tests.helpers import TINY

QUICK = [*TINY, "train.epochs=1", "train.max_steps_per_epoch=2"]


def hpcnn(capsys, *args) -> tuple[int, str, str]:
    code = main([str(a) for a in args])
    out = capsys.readouterr()
    return code, out.out, out.err


def test_a_finished_run_is_complete_and_extends_only_when_asked(tmp_path, capsys):
    runs = tmp_path / "runs"
    assert hpcnn(capsys, "train", *QUICK, f"train.runs_dir={runs}")[0] == 0
    (run,) = runs.iterdir()
    summary, final = run / "summary.json", run / "checkpoints" / "model_final.pt"
    before = (summary.read_bytes(), summary.stat().st_mtime_ns, final.stat().st_mtime_ns)

    code, out, err = hpcnn(capsys, "train", "--resume", run)
    said = [line for line in (out + err).splitlines() if "already complete" in line]
    assert code == 0 and len(said) == 1
    assert f"run {run} is already complete (completed after 1 epochs; val.accuracy " in said[0]
    assert f"see {summary}" in said[0] and f"hpcnn train --resume {run} train.epochs=2" in said[0]
    assert "test (best epoch weights)" not in out + err  # the test split is not scored again
    assert (summary.read_bytes(), summary.stat().st_mtime_ns, final.stat().st_mtime_ns) == before

    assert hpcnn(capsys, "train", "--resume", run, "train.epochs=2")[0] == 0
    assert json.loads(summary.read_text())["epochs_run"] == 2

    fresh = tmp_path / "stopped-early"  # a run that died before its first checkpoint: its config only
    fresh.mkdir()
    shutil.copy(run / "config.resolved.yaml", fresh)
    code, _, err = hpcnn(capsys, "train", "--resume", fresh)
    line = err.strip().splitlines()[-1]
    assert code == 2 and line.startswith("error: no checkpoint to resume from yet")
    command = line.split("started again: ")[1].split()
    assert command == ["hpcnn", "train", str(fresh / "config.resolved.yaml"), "--run-dir", str(fresh)]
    assert hpcnn(capsys, *command[1:])[0] == 0
    assert json.loads((fresh / "summary.json").read_text())["epochs_run"] == 2


def test_a_failed_weights_lookup_leaves_no_run_directory(tmp_path, capsys):
    runs = tmp_path / "runs"
    code, _, err = hpcnn(capsys, "train", *QUICK, f"model.weights={tmp_path / 'missing.pt'}",
                         f"train.runs_dir={runs}")
    assert code == 2 and "model.weights file not found" in err.strip().splitlines()[-1]
    assert not runs.exists() or not any(runs.iterdir())
