"""The results schema (hpcnn.results) and the one atomic writer (hpcnn.files)."""
from __future__ import annotations

import json
import os

import pytest

from hpcnn import files, results

SUMMARY = {"status": "completed", "images_per_second": 1234.5, "wall_seconds": 10,
           "metrics": {"val": {"accuracy": 0.9, "loss": float("nan")}, "test": None},
           "gpu": {"energy_j": 50.0, "gpus": 2, "notes": []}, "world_size": 2, "scale_lr": "none",
           "job": {"restart_count": 0, "ok": True}}


@pytest.mark.parametrize("key, expected", [
    ("images_per_second", 1234.5), ("wall_seconds", 10), ("val.accuracy", 0.9), ("metrics.val.accuracy", 0.9),
    ("gpu.energy_j", 50.0), ("val.loss", None), ("test.accuracy", None), ("scale_lr", None), ("job.ok", None),
    ("nope", None), ("gpu.notes", None)])
def test_value_finds_any_numeric_key(key, expected):
    assert results.value(SUMMARY, key) == expected


def test_numeric_keys_are_what_value_accepts():
    keys = results.numeric_keys(SUMMARY)
    assert {"images_per_second", "val.accuracy", "gpu.energy_j", "gpu.gpus", "job.restart_count"} <= set(keys)
    assert "job.ok" not in keys and "scale_lr" not in keys
    assert all(results.value(SUMMARY, k) is not None or k == "val.loss" for k in keys)


def test_make_summary_stamps_version_and_refuses_unknown_keys():
    s = results.make_summary(name="x", status="completed", wall_seconds=1.0)
    assert s["schema_version"] == results.SCHEMA_VERSION and s["hpcnn_version"]
    assert list(s) == [k for k in results.KEYS if k in s]  # schema order
    with pytest.raises(KeyError, match="imgs_per_sec"):
        results.make_summary(name="x", imgs_per_sec=3)


def test_read_summary_tolerates_missing_and_broken_files(tmp_path):
    assert results.read_summary(tmp_path) is None
    (tmp_path / "summary.json").write_text("{half")
    assert results.read_summary(tmp_path) is None
    results.write_summary(tmp_path, {"status": "early_stopped"})
    assert results.is_final(results.read_summary(tmp_path))


def test_atomic_write_respects_umask_and_leaves_no_temp_on_failure(tmp_path):
    old = os.umask(0o027)
    try:
        path = files.atomic_write_json(tmp_path / "a" / "x.json", {"k": 1})
    finally:
        os.umask(old)
    assert json.loads(path.read_text()) == {"k": 1}
    assert path.stat().st_mode & 0o777 == 0o640

    def explode(f):
        f.write(b"partial")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError):
        files.atomic_write(tmp_path / "a" / "x.json", explode)
    assert json.loads(path.read_text()) == {"k": 1}  # the old file is intact
    assert sorted(p.name for p in (tmp_path / "a").iterdir()) == ["x.json"]


def test_new_run_dir_is_unique_safe_and_absolute(tmp_path):
    a, b = files.new_run_dir(tmp_path, "my job/../x"), files.new_run_dir(tmp_path, "my job/../x")
    assert a != b and a.is_absolute() and a.parent == tmp_path
    assert "/" not in a.name[:20] and a.name.startswith("my_job_.._x-")


def test_job_info_names_array_tasks_and_nodes():
    from hpcnn.env import job_info

    info = job_info({"SLURM_JOB_ID": "57", "SLURM_ARRAY_JOB_ID": "50", "SLURM_ARRAY_TASK_ID": "7",
                     "SLURM_JOB_NODELIST": "n[1-2]", "SLURM_JOB_NUM_NODES": "2", "SLURM_RESTART_COUNT": "1",
                     "SLURM_PROCID": "3"})
    assert (info.job_id, info.raw_job_id, info.nodelist, info.num_nodes) == ("50_7", "57", "n[1-2]", 2)
    assert info.restart_count == 1 and info.global_rank == 3
    assert job_info({}).job_id is None and job_info({"RANK": "2"}).global_rank == 2


def test_docs_list_every_key():
    from tests.helpers import REPO

    text = (REPO / "docs" / "results.md").read_text()
    missing = [k for k in results.KEYS if f"`{k}`" not in text]
    assert not missing, f"docs/results.md does not describe {missing}"
