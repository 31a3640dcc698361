"""Rendered scripts for every shipped profile, checked by the real sbatch (`--test-only`: nothing queued).

`local` and `generic` must be accepted as they are. The real-site profiles ask for things this
cluster does not have (A100 GPUs, a `gpu` feature, accounts, QOS, modules), so they are also checked
with exactly those site facts removed: what remains (every other directive, the quoting, the layout)
must be valid sbatch input; the site facts themselves are golden-tested in tests/unit/test_render.py.
"""
from __future__ import annotations

import dataclasses

import pytest

from hpcnn.config import load_job
from hpcnn.errors import SubmissionError
from hpcnn.slurm.site import commands, rendering
from hpcnn.slurm.site.profiles import list_profiles, load_profile
from hpcnn.slurm.site.resources import resolve

SITE_FACTS = {"gpu_type": None, "constraint": None, "account": None, "qos": None, "partition": "debug",
              "partitions": [], "setup": [], "max_mem_gb": None, "cpus_per_node": None}


def scripts(profile, tmp_path):
    gpus = min(profile.max_gpus_per_node, 2)
    cfg = load_job(None, [f"slurm.gpus_per_node={gpus}", "slurm.time=00:20:00", "slurm.mem_gb=2",
                          "slurm.cpus_per_task=1", f"train.runs_dir={tmp_path}"])
    res = resolve(cfg, profile)
    folder = tmp_path / "submitit"
    return {"submitit": rendering.render_submitit(profile, res, folder=folder),
            "array": rendering.render_submitit(profile, res, folder=folder, array_size=8, max_parallel=2),
            "job": rendering.render_job(cfg, profile, res, runs_dir=tmp_path)}


def sbatch_test_only(tmp_path, name, text) -> str:
    path = tmp_path / f"{name}.sbatch"
    path.write_text(text)
    return commands.sbatch(path, test_only=True)


@pytest.mark.parametrize("name", ["local", "generic"])
def test_local_and_generic_scripts_are_accepted_as_rendered(slurm_cluster, tmp_path, name):
    for kind, text in scripts(load_profile(name), tmp_path).items():
        message = sbatch_test_only(tmp_path, f"{name}-{kind}", text)
        assert "to start at" in message and "partition debug" in message, (kind, message)


@pytest.mark.parametrize("name", sorted(set(list_profiles()) - {"local", "generic"}))
def test_site_profiles_are_valid_sbatch_without_their_site_facts(slurm_cluster, tmp_path, name):
    site = load_profile(name)
    with pytest.raises(SubmissionError):  # as shipped: this cluster has no such GPUs/features/accounts
        sbatch_test_only(tmp_path, f"{name}-as-shipped", scripts(site, tmp_path)["job"])
    neutral = dataclasses.replace(site, **SITE_FACTS)
    for kind, text in scripts(neutral, tmp_path).items():
        assert "to start at" in sbatch_test_only(tmp_path, f"{name}-{kind}", text), kind
