"""data.stage in the rendered sbatch script: the profile's local_scratch exported, the copies removed at the end.

Golden file: tests/golden/staged-job.sbatch (regenerate with HPCNN_REGEN_GOLDEN=1, like test_render.py).
"""
from __future__ import annotations

import shlex

import pytest

from hpcnn.config import load_job
from hpcnn.errors import ProfileError
from hpcnn.slurm.site import rendering as R
from hpcnn.slurm.site.profiles import load_profile, profile_from_dict
from hpcnn.slurm.site.resources import resolve
from tests.unit.test_render import PYTHON, RUNS, check_golden, split_heredoc

SITE = {"name": "scratch-site", "max_nodes": 4, "max_gpus_per_node": 4, "gpu_directive": "gpus_per_node",
        "cpus_per_gpu": 8, "local_scratch": "/local/$USER/${SLURM_JOB_ID}", "local_scratch_gb": 400}


def render(profile, *overrides):
    cfg = load_job(None, ["name=golden", "slurm.gpus_per_node=2", "slurm.nodes=2", "slurm.time=01:30:00",
                          "slurm.max_requeues=2", "data.source=shards", "data.root=/scratch/packs/gal",
                          *overrides])
    return R.render_job(cfg, profile, resolve(cfg, profile), runs_dir=RUNS, python=PYTHON)


def test_staged_job_matches_golden():
    text = render(profile_from_dict(SITE, "test profile scratch-site"), "data.stage=auto")
    assert 'export HPCNN_LOCAL_SCRATCH="/local/$USER/${SLURM_JOB_ID}"' in text
    assert 'rm -rf -- "$STAGE_DIR"' in text
    # the cleanup comes after the self-requeue (which exits 0): a requeued job keeps its copies
    assert text.index("scontrol requeue") < text.index('rm -rf -- "$STAGE_DIR"')
    check_golden("staged-job.sbatch", split_heredoc(text)[0])


def test_a_staging_path_reaches_the_script_as_one_quoted_word(tmp_path):
    canary = tmp_path / "canary"
    hostile = f"/tmp/st age$(touch {canary})"
    text = render(load_profile("local"), f"data.stage={hostile}")
    assert f"STAGE_DIR={shlex.quote(hostile)}/hpcnn-stage-\"$SLURM_JOB_ID\"" in text


def test_jobs_without_staging_render_no_staging_lines():
    text = render(load_profile("local"))
    assert "STAGE_DIR" not in text and "HPCNN_LOCAL_SCRATCH" not in text


@pytest.mark.parametrize("bad", ["/local/$(whoami)", "/local/a b", "/local/`id`", "/tmp/x;rm", '/tmp/"q'])
def test_local_scratch_cannot_carry_shell(bad):
    with pytest.raises(ProfileError, match="local_scratch"):
        profile_from_dict({**SITE, "local_scratch": bad})
