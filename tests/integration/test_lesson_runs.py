"""Kept lesson runs are reused only by the code that trained them (tests/integration/lesson_runs.py)."""
from __future__ import annotations

import json
import shutil

from hpcnn.config import load_job
from tests.integration.lesson_runs import PACKAGE, code_digest, finished_run, run_key


def _finish(root, name, status="completed"):
    run = root / name
    run.mkdir(parents=True)
    (run / "summary.json").write_text(json.dumps({"status": status}))
    return run


def test_the_code_digest_follows_every_source_file_but_not_byte_code(tmp_path):
    copy = tmp_path / "hpcnn"
    shutil.copytree(PACKAGE, copy, ignore=shutil.ignore_patterns("__pycache__"))
    before = code_digest(copy)
    assert before == code_digest(PACKAGE)  # the copy is the same code
    (copy / "train" / "__pycache__").mkdir(exist_ok=True)
    (copy / "train" / "__pycache__" / "trainer.cpython-311.pyc").write_bytes(b"stale")
    assert code_digest.__wrapped__(copy) == before
    trainer = copy / "train" / "trainer.py"
    trainer.write_text(trainer.read_text() + "\n# a changed trainer\n")
    assert code_digest.__wrapped__(copy) != before


def test_a_run_kept_by_other_code_is_not_reused(tmp_path):
    cfg = load_job(None, ["train.epochs=1"])
    ours, theirs = "a" * 40, "b" * 40
    _finish(tmp_path, f"{run_key(cfg, theirs)}-{cfg.name}")  # the same config, trained by other code
    _finish(tmp_path, f"{run_key(cfg, ours)[:12]}-{cfg.name}")  # the old naming: the config's key alone
    assert finished_run(tmp_path, cfg, ours) is None
    _finish(tmp_path, f"{run_key(cfg, ours)}-interrupted", status="preempted")
    assert finished_run(tmp_path, cfg, ours) is None  # not finished: trained again
    run = _finish(tmp_path, f"{run_key(cfg, ours)}-{cfg.name}")
    assert finished_run(tmp_path, cfg, ours) == (run, {"status": "completed"})
    other_cfg = load_job(None, ["train.epochs=2"])
    assert finished_run(tmp_path, other_cfg, ours) is None
