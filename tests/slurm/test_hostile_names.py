"""Hostile job names and paths submitted to the real local Slurm: nothing executes, the job still runs.

The names hold command substitutions, backticks, both quote kinds, ';', '#', spaces and tabs; each
substitution would create a canary file if it ever reached a shell unquoted (or sbatch's #SBATCH parser
split it). A newline cannot be held by an #SBATCH line at all: such a name is refused before sbatch.
"""
from __future__ import annotations

import pytest

import hpcnn
from hpcnn.config import load_job
from hpcnn.errors import ConfigError
from hpcnn.files import safe_name
from hpcnn.slurm.site import commands

from tests.slurm.support import (JOB_TIMEOUT_S, POLL_MAX_S, controller_job_name, read_summary, state_dir, tiny,
                                 wait_finished)

__all__ = ["state_dir"]


def hostile(canary_dir, tag: str) -> str:
    c = canary_dir / f"CANARY-{tag}"
    return f"x $(touch {c}1) `touch {c}2` 'q\"uo;te' ;touch {c}3 # end\ttab & $HOME"


def no_canaries(root) -> list:
    """Canary files an executed substitution would have made (top level only: the hostile run
    directories themselves contain 'CANARY' in their nested names, harmlessly)."""
    return sorted(str(p) for p in root.glob("CANARY-*") if p.is_file())


def test_hand_script_with_hostile_name_and_path_is_inert_and_runs(slurm_cluster, tmp_path):
    name = hostile(tmp_path, "name")
    runs = tmp_path / hostile(tmp_path, "path")
    cfg = load_job(None, tiny(tmp_path, "train.epochs=1"))
    cfg.name = cfg.slurm.job_name = name  # the config name travels in the heredoc, the job name in #SBATCH
    script = tmp_path / "job.sbatch"
    script.write_text(hpcnn.render(cfg, "local", runs_dir=runs))
    runs.mkdir(parents=True)  # as `hpcnn render` does: Slurm opens the batch log there
    job_id = commands.sbatch(script)
    row = wait_finished(slurm_cluster, job_id)
    assert no_canaries(tmp_path) == [], "a hostile value was executed"
    assert row["State"] == "COMPLETED", row
    assert controller_job_name(slurm_cluster, job_id) == name, "sbatch read the quoted #SBATCH value exactly"
    summary = read_summary(runs / f"{safe_name(name)}-{job_id}")
    assert summary["status"] == "completed" and summary["name"] == name
    assert (runs / f"{safe_name(name)}-{job_id}.out").is_file(), "the batch log went where #SBATCH --output said"


def test_submitit_job_with_hostile_name_and_runs_dir_is_inert_and_runs(slurm_cluster, tmp_path, state_dir):
    name = hostile(tmp_path, "job")
    runs = tmp_path / hostile(tmp_path, "dir")
    cfg = load_job(None, tiny(tmp_path, "train.epochs=1"))
    cfg.train.runs_dir, cfg.slurm.job_name = str(runs), name  # set directly: an override is YAML (' #' = comment)
    handle = hpcnn.submit(cfg, "local")
    assert handle.run_dir.parent == runs
    status = handle.wait(timeout_s=JOB_TIMEOUT_S, poll_max_s=POLL_MAX_S)
    assert no_canaries(tmp_path) == []
    assert status.succeeded, status.reason
    assert controller_job_name(slurm_cluster, handle.job_id) == name
    assert "Job completed successfully" in handle.logs(tail=0)


@pytest.mark.parametrize("field", ["job_name", "runs_dir"])
def test_newline_is_refused_before_sbatch(slurm_cluster, tmp_path, state_dir, field):
    evil = f"ok\n#SBATCH --wrap=touch {tmp_path}/CANARY-newline"
    resources = {"job_name": evil} if field == "job_name" else {}
    overrides = tiny(tmp_path, "name=newline-probe")
    if field == "runs_dir":
        overrides.append(f"train.runs_dir={tmp_path / 'a'}")
    with pytest.raises(ConfigError, match="newline"):
        if field == "runs_dir":
            cfg = load_job(None, overrides)
            cfg.train.runs_dir = str(tmp_path / evil)
            hpcnn.submit(cfg, "local")
        else:
            hpcnn.submit(None, "local", resources=resources, overrides=overrides)
    assert slurm_cluster.run(["squeue", "-h", "-n", "hpcnn-newline-probe"]).stdout.strip() == ""
    assert no_canaries(tmp_path) == []
