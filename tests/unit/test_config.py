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
