"""The run directory (hpcnn.rundir): one module names its files, owns the resolved config and the checkpoint choice."""
from __future__ import annotations

import ast

import pytest

from hpcnn import rundir
from hpcnn.config import load_job
from hpcnn.config.weights_names import run_dir_model_name, weights_source
from hpcnn.errors import CheckpointError, ConfigError, HpcnnError
from hpcnn.predict.manifest import checkpoint_path
from tests.helpers import REPO

# Who may spell a run directory's file names in code: rundir names them all; results owns summary.json, rundir_lock
# its lock file. Docstrings and help texts may mention them; string constants that build paths may not.
OWNERS = {rundir.CONFIG_FILE: "hpcnn/rundir.py", rundir.BEST: "hpcnn/rundir.py", rundir.FINAL: "hpcnn/rundir.py",
          rundir.METRICS_FILE: "hpcnn/rundir.py", rundir.PROGRESS_FILE: "hpcnn/rundir.py",
          rundir.JOB_FILE: "hpcnn/rundir.py", rundir.SUMMARY_FILE: "hpcnn/results.py",
          rundir.LOCK_FILE: "hpcnn/rundir_lock.py"}


def layout_literals() -> dict[str, list[str]]:
    """module -> the layout names it uses as string constants (code that builds a path), owners excluded."""
    found: dict[str, list[str]] = {}
    for path in sorted((REPO / "hpcnn").rglob("*.py")):
        where = str(path.relative_to(REPO))
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Constant) and node.value in OWNERS and OWNERS[node.value] != where:
                found.setdefault(where, []).append(f"{node.value}:{node.lineno}")
    return found


def make_run(tmp_path, *checkpoints, cfg=None):
    run = tmp_path / "run"
    (run / rundir.CHECKPOINTS_DIR).mkdir(parents=True)
    for name in checkpoints:
        (run / rundir.CHECKPOINTS_DIR / name).write_bytes(b"weights")
    rundir.write_config(run, cfg or load_job(None, ["model.name=simple_cnn", "train.epochs=2"]))
    return run


def test_each_layout_name_is_spelt_by_its_owner_alone():
    found = layout_literals()
    assert found == {}


def test_the_resolved_config_is_named_in_one_place():
    """`grep -rn config.resolved.yaml hpcnn` finds rundir.py alone (docstrings included)."""
    found = {str(p.relative_to(REPO)) for p in (REPO / "hpcnn").rglob("*.py") if rundir.CONFIG_FILE in p.read_text()}
    assert found == {"hpcnn/rundir.py"}


@pytest.mark.parametrize("present, which, expected", [
    ((rundir.BEST, rundir.FINAL), "best", rundir.BEST),
    ((rundir.FINAL,), "best", rundir.FINAL),
    ((rundir.BEST, rundir.FINAL), "final", rundir.FINAL),
    ((rundir.BEST,), "final", None),
    ((), "best", None),
])
def test_best_checkpoint_else_final(tmp_path, present, which, expected):
    run = make_run(tmp_path, *present)
    found = rundir.checkpoint(run, which)
    assert (found.name if found else None) == expected


def test_readers_share_the_checkpoint_choice(tmp_path):
    run = make_run(tmp_path, rundir.FINAL)
    assert checkpoint_path(run, "best") == rundir.checkpoint(run) == run / "checkpoints" / "model_final.pt"
    model = load_job(None, [f"model.weights={run}"]).model
    assert weights_source(model) == run / "checkpoints" / "model_final.pt"
    with pytest.raises(CheckpointError, match="no model_final.pt"):
        checkpoint_path(make_run(tmp_path / "other", rundir.BEST), "final")
    with pytest.raises(ConfigError, match="has no checkpoints/best.pt or checkpoints/model_final.pt"):
        weights_source(load_job(None, [f"model.weights={make_run(tmp_path / 'empty')}"]).model)


def test_config_for_resume_reads_back_what_was_written(tmp_path):
    run = make_run(tmp_path)
    cfg = rundir.config_for_resume(run, ["train.epochs=5"])
    assert (cfg.model.name, cfg.train.epochs) == ("simple_cnn", 5)
    assert rundir.config_for_resume(run).train.epochs == 2
    assert rundir.model_name(run) == "simple_cnn"
    assert run_dir_model_name(run / "checkpoints" / "best.pt") == "simple_cnn"
    assert run_dir_model_name(tmp_path / "weights.pt") is None
    assert rundir.config_data(run)["train"]["epochs"] == 2


def test_a_folder_without_a_config_is_named(tmp_path):
    with pytest.raises(CheckpointError, match="not a run directory"):
        rundir.config_for_resume(tmp_path)
    assert rundir.config_data(tmp_path) is None and rundir.model_name(tmp_path) is None


def test_an_unreadable_config_is_one_line(tmp_path):
    rundir.config_path(tmp_path).write_text("model: [unclosed\n")
    with pytest.raises(HpcnnError, match="cannot be read") as err:
        rundir.config_data(tmp_path)
    assert "\n" not in str(err.value)
    assert rundir.model_name(tmp_path) is None  # a hint, never an error


def test_summary_goes_through_the_results_schema(tmp_path):
    from hpcnn.results import make_summary

    rundir.write_summary(tmp_path, make_summary(status="completed", classes=["a", "b"]))
    assert (tmp_path / rundir.SUMMARY_FILE).is_file()
    assert rundir.read_summary(tmp_path)["classes"] == ["a", "b"]
    assert rundir.read_summary(tmp_path / "nothing") is None
