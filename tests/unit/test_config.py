"""Job configs: strict keys, typed values, clear errors naming key and file."""
from __future__ import annotations

import pytest
import yaml

from hpcnn.config import default_config, dump_yaml, load_job, parse_override, to_dict
from hpcnn.errors import ConfigError

from tests.helpers import REPO


def write(tmp_path, text):
    p = tmp_path / "job.yaml"
    p.write_text(text)
    return p


def test_default_job_file_equals_builtin_default():
    assert to_dict(load_job(REPO / "jobs" / "default.yaml")) == to_dict(default_config())


JOB_FILES = [p for p in sorted((REPO / "jobs").glob("*.yaml"))
             if not {"grid", "base", "runs"} & set(yaml.safe_load(p.read_text()) or {})]  # sweeps: see test_sweep


@pytest.mark.parametrize("path", JOB_FILES, ids=lambda p: p.name)
def test_every_shipped_job_config_is_valid(path):
    load_job(path)


def test_misspelt_key_names_dotted_path_file_and_suggestion(tmp_path):
    p = write(tmp_path, "optim:\n  lr: 0.01\n  weight_decy: 0.1\n")
    with pytest.raises(ConfigError) as err:
        load_job(p)
    msg = str(err.value)
    assert "optim.weight_decy" in msg and str(p) in msg and "did you mean 'optim.weight_decay'" in msg


def test_misspelt_section(tmp_path):
    with pytest.raises(ConfigError, match=r"unknown config key 'trian'.*did you mean 'train'"):
        load_job(write(tmp_path, "trian:\n  epochs: 3\n"))


@pytest.mark.parametrize("text,needle", [
    ("train:\n  batch_size: 0\n", "'train.batch_size' must be > 0, got 0"),
    ("optim:\n  lr: -0.1\n", "'optim.lr' must be > 0"),
    ("data:\n  val_fraction: 1.0\n", "'data.val_fraction' must be strictly between 0 and 1"),
    ("train:\n  epochs: ten\n", "'train.epochs' must be an integer, got 'ten'"),
    ("train:\n  amp: true\n", "'train.amp' must be a string"),
    ("model:\n  name: resnet_smal\n", "unknown model name 'model.name: resnet_smal'"),
    ("data:\n  source: folder\n", "'data.root' is required"),
    ("slurm:\n  time: 2 hours\n", "'slurm.time' must look like"),
])
def test_bad_values_are_named(tmp_path, text, needle):
    p = write(tmp_path, text)
    with pytest.raises(ConfigError) as err:
        load_job(p)
    assert needle in str(err.value) and str(p) in str(err.value)


def test_overrides_parse_yaml_values_and_win_over_file(tmp_path):
    p = write(tmp_path, "optim:\n  lr: 0.01\n")
    cfg = load_job(p, ["optim.lr=1e-3", "model.channels=[4,8]", "optim.clip_grad_norm=null", "name=x y"])
    assert cfg.optim.lr == pytest.approx(1e-3) and isinstance(cfg.optim.lr, float)
    assert cfg.model.channels == [4, 8] and cfg.optim.clip_grad_norm is None and cfg.name == "x y"


def test_override_errors_say_command_line():
    with pytest.raises(ConfigError, match="command-line"):
        load_job(None, ["train.epoch=3"])
    with pytest.raises(ConfigError, match="not of the form"):
        parse_override("=3")


def test_missing_file_and_invalid_yaml(tmp_path):
    with pytest.raises(ConfigError, match="config file not found"):
        load_job(tmp_path / "nope.yaml")
    with pytest.raises(ConfigError, match=r"invalid YAML.*job.yaml:\d"):
        load_job(write(tmp_path, "train:\n  epochs: [1,\n"))


def test_dump_roundtrip(tmp_path):
    cfg = load_job(None, ["optim.lr=0.5", "data.augment.hflip=true"])
    again = load_job(write(tmp_path, dump_yaml(cfg)))
    assert to_dict(again) == to_dict(cfg)


def test_config_reference_is_up_to_date():
    from hpcnn.config.reference import render

    assert (REPO / "docs" / "config.md").read_text() == render(), \
        "docs/config.md is stale: run `python -m hpcnn.config.reference > docs/config.md`"


def test_hash_in_plain_override_is_kept_but_quoted_values_follow_yaml():
    assert parse_override("train.runs_dir=/data/run #3") == ("train.runs_dir", "/data/run #3")
    assert parse_override('slurm.job_name="a\\n#b"') == ("slurm.job_name", "a\n#b")


# --- numbers written as people write them (YAML 1.2 floats) in every kind of file hpcnn reads ---------------------

FLOAT_FORMS = [("1e-3", 1e-3), ("1E-3", 1e-3), ("1.0e-3", 1e-3), (".5", 0.5), ("5e+2", 500.0), ("-2e-4", -2e-4),
               ("-.5", -0.5), ("+1e-2", 1e-2)]


@pytest.mark.parametrize("text,number", FLOAT_FORMS)
def test_job_file_and_overrides_read_exponent_and_leading_dot_floats(tmp_path, text, number):
    if number > 0:
        cfg = load_job(write(tmp_path, f"optim:\n  lr: {text}\n  weight_decay: {text}\n"))
        assert cfg.optim.lr == cfg.optim.weight_decay == pytest.approx(number) and isinstance(cfg.optim.lr, float)
    else:  # read as a number, so the range check speaks, not "must be a number"
        with pytest.raises(ConfigError, match=r"'model.dropout' must be in \[0, 1\), got -"):
            load_job(write(tmp_path, f"model:\n  dropout: {text}\n"))
    assert parse_override(f"optim.lr={text}") == ("optim.lr", pytest.approx(number))


def test_yaml_floats_do_not_change_pyyaml_globally():
    from hpcnn.config.strict import load_yaml

    assert load_yaml("x: 1e-3") == {"x": 1e-3}
    assert yaml.safe_load("x: 1e-3") == {"x": "1e-3"}  # other code's yaml.safe_load keeps its own (1.1) rules
    assert load_yaml("a: 1.2.3\nb: e3\nc: 1e\nd: '1e-3'") == {"a": "1.2.3", "b": "e3", "c": "1e", "d": "1e-3"}


@pytest.mark.parametrize("text,number", FLOAT_FORMS[:5])
def test_profile_sweep_and_study_files_read_exponent_floats(tmp_path, text, number):
    from hpcnn.scale.study import load_study
    from hpcnn.slurm.jobs.sweep import expand, load_sweep
    from hpcnn.slurm.site.profiles import load_profile

    local = (REPO / "slurm_templates" / "profiles" / "local.yaml").read_text()
    profile = tmp_path / "site.yaml"
    profile.write_text(local.replace("alpha_s: 2.07e-4", f"alpha_s: {text}"))
    assert load_profile(profile).links["inter"]["alpha_s"] == pytest.approx(number)
    (tmp_path / "base.yaml").write_text(f"optim:\n  weight_decay: {text}\n")
    sweep = tmp_path / "sweep.yaml"
    sweep.write_text(f"base: base.yaml\ngrid:\n  optim.lr: [{text}, 3e-3]\n")
    _, tasks = expand(load_sweep(sweep))
    assert [t.config.optim.lr for t in tasks] == [pytest.approx(number), pytest.approx(3e-3)]
    assert tasks[0].config.optim.weight_decay == pytest.approx(number)
    study = tmp_path / "study.yaml"
    study.write_text((REPO / "jobs" / "scaling" / "local_cpu.yaml").read_text().replace(
        "tolerance: 0.5", f"tolerance: {text if number < 1 else '5e-1'}"))
    assert load_study(study).reference.tolerance == pytest.approx(number if number < 1 else 0.5)


def test_every_config_error_is_reported_at_once(tmp_path):
    p = write(tmp_path, "optim:\n  lr: fast\n  weight_decy: 0.1\ntrain:\n  epochs: 0\n  amp: bf32\n"
                        "model:\n  dropout: 1.5\n")
    with pytest.raises(ConfigError) as err:
        load_job(p)
    lines = str(err.value).splitlines()
    assert lines[0].startswith(f"5 errors in {p}")
    assert [line.strip() for line in lines[1:]] == [
        "'optim.lr' must be a number, got 'fast'",
        "unknown config key 'optim.weight_decy' — hint: did you mean 'optim.weight_decay'?",
        "'model.dropout' must be in [0, 1), got 1.5",
        "'train.epochs' must be > 0, got 0",
        "'train.amp' must be none, bf16 or fp16, got 'bf32'"]
    assert len(err.value.problems) == 5


def test_one_error_reads_as_before_and_overrides_join_the_list(tmp_path):
    with pytest.raises(ConfigError) as err:
        load_job(write(tmp_path, "train:\n  epochs: 0\n"))
    assert "\n" not in str(err.value) and "'train.epochs' must be > 0, got 0" in str(err.value)
    with pytest.raises(ConfigError, match=r"(?s)2 errors.*'train.epoch'.*'train.epochs' must be > 0"):
        load_job(write(tmp_path, "train:\n  epochs: 0\n"), ["train.epoch=3"])


def test_every_profile_error_is_reported_at_once(tmp_path):
    from hpcnn.errors import ProfileError
    from hpcnn.slurm.site.profiles import load_profile

    p = tmp_path / "site.yaml"
    p.write_text("name: site\nmax_nodez: 4\nmax_nodes: two\ngpu_type: [A100]\n")
    with pytest.raises(ProfileError, match=r"(?s)^3 errors in .*site.yaml.*max_nodez.*max_nodes.*gpu_type"):
        load_profile(p)


def test_overrides_index_list_items_such_as_phases():
    cfg = load_job(REPO / "jobs" / "fewshot_transfer.yaml", ["phases[0].epochs=1", "phases[1].optim.lr=1e-4"])
    assert cfg.phases[0].epochs == 1 and cfg.phases[1].optim == {"lr": 1e-4}
    cfg = load_job(None, ["phases[0].trainable=head", "phases[1].epochs=3"])  # one past the end adds a phase
    assert [(p.trainable, p.epochs) for p in cfg.phases] == [("head", 1), ("all", 3)]


@pytest.mark.parametrize("override,needle", [
    ("phases[5].epochs=1", "index 5 is past the end of a list of 2 (command line) — hint: the next item is [2]"),
    ("phases.epochs=1", "'phases' is not a section"),
    ("phases[0]x=1", "'phases[0]x' is not a key name or name[index]"),
])
def test_bad_list_index_overrides_are_named(override, needle):
    with pytest.raises(ConfigError) as err:
        load_job(REPO / "jobs" / "fewshot_transfer.yaml", [override])
    assert needle in str(err.value)
