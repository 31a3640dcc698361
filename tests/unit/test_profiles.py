"""Site profiles and resource resolution: strict loading, precedence, limits."""
from __future__ import annotations

import dataclasses

import pytest

from hpcnn.config import load_job
from hpcnn.errors import ConfigError, ProfileError, ResourceError
from hpcnn.config.walltime import format_walltime, walltime_minutes
from hpcnn.slurm.site.profiles import Profile, list_profiles, load_profile, profile_from_dict
from hpcnn.slurm.site.resources import check_fits, resolve

SHIPPED = {"local", "generic", "nesi", "perlmutter"}


def write(tmp_path, text, name="site.yaml"):
    path = tmp_path / name
    path.write_text(text)
    return path


def test_shipped_profiles_all_load():
    assert SHIPPED <= set(list_profiles())
    for name in list_profiles():
        profile = load_profile(name)
        assert profile.name == name and profile.source.endswith(f"{name}.yaml")
        assert profile.description, f"{name} needs a description for `hpcnn profiles list`"


def test_real_site_shapes():
    nesi, perl, local = load_profile("nesi"), load_profile("perlmutter"), load_profile("local")
    assert (nesi.gpu_directive, nesi.gpu_type) == ("gpus_per_node", "A100")
    assert any(line.startswith("module load") for line in nesi.setup)
    assert (perl.constraint, perl.qos, perl.max_gpus_per_node) == ("gpu", "regular", 4)
    assert (local.partition, local.max_nodes, local.max_gpus_per_node, local.gpu_directive) == ("debug", 3, 2, "gres")


def test_unknown_key_names_key_file_and_closest_name(tmp_path):
    path = write(tmp_path, "max_gpu_per_node: 2\n")
    with pytest.raises(ProfileError) as err:
        load_profile(path)
    text = str(err.value)
    assert "max_gpu_per_node" in text and str(path) in text and "did you mean 'max_gpus_per_node'" in text


@pytest.mark.parametrize("text, key", [
    ("max_nodes: two\n", "'max_nodes' must be an integer"),
    ("setup: module load x\n", "'setup' must be a list"),
    ("gpu_directive: gpus\n", "'gpu_directive' must be one of"),
    ("launcher: mpirun\n", "'launcher' must be one of"),
    ("launcher: torchrun\nsignal: USR2\n", "must be TERM or INT with launcher torchrun"),
    ("max_time: 3 days\n", "'max_time' must look like"),
    ("env: {'BAD-NAME': x}\n", "env.BAD-NAME"),
    ("extra_sbatch: {'Mail Type': x}\n", "extra_sbatch.Mail Type"),
    ("requeue: 1\n", "'requeue' must be true or false"),
    ("partition: a\npartitions: [b]\n", "'a' is not among partitions"),
])
def test_invalid_values_are_named(tmp_path, text, key):
    with pytest.raises(ProfileError) as err:
        load_profile(write(tmp_path, text))
    assert key in str(err.value)


def test_unknown_profile_name_suggests(monkeypatch):
    with pytest.raises(ProfileError) as err:
        load_profile("locl")
    assert "did you mean 'local'" in str(err.value)


def test_templates_dir_override(tmp_path, monkeypatch):
    (tmp_path / "profiles").mkdir()
    write(tmp_path / "profiles", "description: mine\nmax_gpus_per_node: 8\n", "mysite.yaml")
    monkeypatch.setenv("HPCNN_TEMPLATES_DIR", str(tmp_path))
    assert list_profiles() == ["mysite"]
    assert load_profile("mysite").max_gpus_per_node == 8


def test_walltime_parsing():
    assert walltime_minutes("00:30:00") == 30
    assert walltime_minutes("1-02:03:04") == 1440 + 123 + 1  # seconds round up
    assert walltime_minutes("90") == 90
    assert format_walltime(1563) == "1-02:03:00" and format_walltime(30) == "00:30:00"
    with pytest.raises(ConfigError):
        walltime_minutes("1h")


def test_resolve_precedence_job_over_profile_over_default():
    profile = load_profile("local")
    res = resolve(load_job(None, ["slurm.gpus_per_node=2"]), profile)
    assert (res.tasks_per_node, res.cpus_per_task, res.mem_gb) == (2, 2, 6.0)  # one task/GPU, profile per-GPU defaults
    assert res.partition == "debug" and res.job_name == "hpcnn-default"
    res = resolve(load_job(None, ["slurm.cpus_per_task=1", "slurm.mem_gb=2", "slurm.partition=other",
                                  "slurm.job_name=mine"]), profile)
    assert (res.cpus_per_task, res.mem_gb, res.partition, res.job_name) == (1, 2.0, "other", "mine")
    cpu = resolve(load_job(None), profile)
    assert (cpu.gpus_per_node, cpu.tasks_per_node, cpu.cpus_per_task, cpu.mem_gb) == (0, 1, 1, 1.0)


@pytest.mark.parametrize("overrides, message", [
    (["slurm.gpus_per_node=3"], "exceeds the 2 GPUs a node has"),
    (["slurm.nodes=4"], "exceeds max_nodes=3"),
    (["slurm.time=1-00:00:01"], "exceeds the site limit"),
    (["slurm.mem_gb=64"], "exceeds the 6.8 GB a node has"),
    (["slurm.partition=gpu"], "unknown partition 'gpu'"),
    (["slurm.gpus_per_node=2", "slurm.tasks_per_node=1"], "hpcnn runs one task per GPU"),
    (["slurm.cpus_per_task=3", "slurm.tasks_per_node=2"], "6 CPUs per node, but a node has 4"),
])
def test_requests_that_do_not_fit_are_refused(overrides, message):
    with pytest.raises(ResourceError) as err:
        check_fits(resolve(load_job(None, overrides), load_profile("local")), load_profile("local"))
    assert message in str(err.value)


def test_gpu_request_on_cpu_only_profile():
    profile = profile_from_dict({"max_gpus_per_node": 0})
    with pytest.raises(ResourceError, match="has no GPUs"):
        check_fits(resolve(load_job(None, ["slurm.gpus_per_node=1"]), profile), profile)


def test_extra_sbatch_cannot_take_over_managed_options():
    profile = load_profile("local")
    with pytest.raises(ConfigError, match="hpcnn manages"):
        check_fits(resolve(load_job(None, ["slurm.extra_sbatch={array: 0-9}"]), profile), profile)
    check_fits(resolve(load_job(None, ["slurm.extra_sbatch={mail-type: END}"]), profile), profile)


def test_newline_in_job_name_is_refused():
    profile = load_profile("local")
    res = dataclasses.replace(resolve(load_job(None), profile), job_name="a\n#SBATCH --wrap=x")
    with pytest.raises(ConfigError, match="newline"):
        check_fits(res, profile)


def test_profiles_cli(capsys):
    from hpcnn.cli import main as hpcnn_main

    assert hpcnn_main(["profiles", "list"]) == 0
    out = capsys.readouterr().out
    assert all(name in out for name in SHIPPED)
    assert hpcnn_main(["profiles", "show", "nesi"]) == 0
    out = capsys.readouterr().out
    assert 'gpu_type: "A100"' in out and "# GPU type" in out
    assert hpcnn_main(["profiles", "show", "nope"]) == 2
    assert "unknown profile 'nope'" in capsys.readouterr().err


def test_profile_is_a_frozen_dataclass():
    with pytest.raises(dataclasses.FrozenInstanceError):
        load_profile("local").max_nodes = 9
    assert isinstance(load_profile(load_profile("local")), Profile)


# ---------------------------------------------------------------- which profile, and why (issue 20, item 3)
@pytest.fixture
def no_default(tmp_path, monkeypatch):
    """A user who has set no site default: no $HPCNN_PROFILE, an empty config home."""
    monkeypatch.delenv("HPCNN_PROFILE", raising=False)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    return tmp_path / "config" / "hpcnn" / "config.yaml"


def test_without_any_profile_choice_nothing_falls_back_to_the_test_cluster(tmp_path, no_default):
    from hpcnn.slurm.jobs.submission import plan_job

    with pytest.raises(ProfileError) as err:
        plan_job(None, None, None, [f"train.runs_dir={tmp_path / 'runs'}"])
    text = str(err.value)
    assert text.startswith("no site profile chosen") and "\n" not in text
    assert "shipped: generic, local, nesi, perlmutter" in text and "export HPCNN_PROFILE=NAME" in text
    assert f"'profile: NAME' into {no_default}" in text


def test_the_site_default_comes_from_the_environment_then_the_user_config_file(tmp_path, no_default, monkeypatch):
    from hpcnn.slurm.site.choice import choose, explain, site_default

    no_default.parent.mkdir(parents=True)
    mine = write(no_default.parent, "description: my site\nmax_gpus_per_node: 8\n", "mysite.yaml")
    no_default.write_text("profile: mysite.yaml   # relative to this file\n")
    assert site_default() == type(site_default())(str(mine), str(no_default))
    assert load_profile().max_gpus_per_node == 8
    assert explain(load_profile()) == f"profile mysite ({mine}), chosen by {no_default}"
    monkeypatch.setenv("HPCNN_PROFILE", "generic")
    assert load_profile().name == "generic" and explain(load_profile()).endswith("chosen by $HPCNN_PROFILE")
    assert choose("nesi", "perlmutter").origin == "--profile"
    assert choose(None, "perlmutter") == type(site_default())("perlmutter", "the job config's slurm.profile")
    assert explain(load_profile("nesi"), None, "nesi").endswith("chosen by the job config's slurm.profile")


@pytest.mark.parametrize("text, message", [
    ("profil: local\n", "unknown key 'profil'"),
    ("profile: [local]\n", "'profile' must be a profile name or path"),
    ("- local\n", "must be a YAML mapping"),
])
def test_a_bad_user_config_file_is_named(no_default, text, message):
    no_default.parent.mkdir(parents=True)
    no_default.write_text(text)
    with pytest.raises(ProfileError) as err:
        load_profile()
    assert message in str(err.value) and str(no_default) in str(err.value)


def test_shipped_site_values_to_fill_in_are_marked_as_placeholders():
    from hpcnn.slurm.site.profiles import PLACEHOLDER_KEYS, is_placeholder

    marked = {name: [k for k in PLACEHOLDER_KEYS if is_placeholder(getattr(load_profile(name), k))]
              for name in list_profiles()}
    assert marked == {"generic": [], "local": [], "nesi": ["account"], "perlmutter": ["account"]}
    assert not is_placeholder("nesi12345") and not is_placeholder(None) and is_placeholder(" <x> ")
