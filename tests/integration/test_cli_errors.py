"""What a user sees for common mistakes: one line naming what and where, exit 2, no traceback."""
from __future__ import annotations

import pytest

from tests.helpers import TINY, run_hpcnn


def assert_clean_error(proc, *needles):
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    line = proc.stderr.strip().splitlines()[-1]
    assert line.startswith("error: ")
    for needle in needles:
        assert needle in line, line


def test_misspelt_key_in_file(tmp_path):
    cfg = tmp_path / "job.yaml"
    cfg.write_text("train:\n  epocs: 3\n")
    assert_clean_error(run_hpcnn("train", cfg, timeout=60), "'train.epocs'", str(cfg), "did you mean 'train.epochs'")


def test_wrong_type_override():
    assert_clean_error(run_hpcnn("train", "train.batch_size=big", timeout=60), "'train.batch_size' must be an integer",
                       "command-line")


def test_missing_torchvision_dataset_names_fetch_command(tmp_path):
    root = tmp_path / "nothing-here"
    proc = run_hpcnn("train", *TINY, "data.source=torchvision", "data.name=CIFAR10", f"data.root={root}",
                     "data.channels=3", f"train.runs_dir={tmp_path / 'runs'}", timeout=120)
    assert_clean_error(proc, "CIFAR10 not found", f"hpcnn data fetch CIFAR10 --root {root}")
    assert list((tmp_path / "runs").iterdir()) == []  # a job that never started leaves no run directory


def test_missing_folder_dataset(tmp_path):
    kept = tmp_path / "kept-run"  # a directory the user named and that holds something: never removed
    kept.mkdir()
    (kept / "notes.txt").write_text("mine")
    proc = run_hpcnn("train", *TINY, "data.source=folder", f"data.root={tmp_path / 'missing'}", "--run-dir", kept,
                     timeout=120)
    assert_clean_error(proc, "image folder not found", "data.root")
    assert (kept / "notes.txt").read_text() == "mine"


@pytest.mark.parametrize("args", [["config", "show", "model.name=vgg"], ["train", "a.yaml", "b.yaml"]])
def test_other_errors_are_one_line(args):
    proc = run_hpcnn(*args, timeout=60)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr


def test_debug_flag_shows_traceback():
    proc = run_hpcnn("--debug", "config", "show", "optim.lr=-1", timeout=60)
    assert proc.returncode != 0 and "Traceback" in proc.stderr


def test_config_show_prints_effective_config():
    proc = run_hpcnn("config", "show", "jobs/default.yaml", "optim.lr=0.01", timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert "lr: 0.01" in proc.stdout and "jobs/default.yaml + optim.lr=0.01" in proc.stdout
