"""YAML and ``key.sub=value`` overrides -> a validated JobConfig.

Strict on purpose: a misspelt key is the most common way a queued job wastes hours, so
every unknown key is rejected with its dotted path, the file, and the closest valid name.
"""
from __future__ import annotations

import dataclasses
import re
from pathlib import Path
from typing import Any, Iterable, Mapping

import yaml

from ..errors import ConfigError
from . import strict
from .schema import CHECKS, JobConfig
from .walltime import walltime_minutes


def default_config() -> JobConfig:
    """The built-in default job: a CNN on the embedded synthetic galaxies."""
    return strict.defaults(JobConfig)


def get(cfg: JobConfig, dotted: str) -> Any:
    obj: Any = cfg
    for part in dotted.split("."):
        obj = getattr(obj, part)
    return obj


def validate(cfg: JobConfig, where: str = "config") -> JobConfig:
    """Range and choice checks that types alone cannot express."""
    for key, (ok, message) in CHECKS.items():
        value = get(cfg, key)
        if not ok(value):
            raise ConfigError(f"'{key}' {message}, got {value!r}", where)
    walltime_minutes(cfg.slurm.time, "slurm.time", where)  # raises ConfigError naming the key
    if cfg.data.source in ("folder", "torchvision", "hdf5") and not cfg.data.root:
        raise ConfigError(f"'data.root' is required when data.source is {cfg.data.source}", where)
    if cfg.data.source == "torchvision" and not cfg.data.name:
        raise ConfigError("'data.name' is required when data.source is torchvision (e.g. CIFAR10)", where)
    from .model_names import check_model_name
    from .phases import resolve_phases

    check_model_name(cfg.model.name, where)
    resolve_phases(cfg, where)
    if cfg.ssl.method != "none" and (cfg.phases or cfg.train.accumulate > 1):
        raise ConfigError(f"ssl.method {cfg.ssl.method} trains the backbone in one stage without gradient accumulation",
                          where, "remove phases / train.accumulate here; fine-tune afterwards in a job with "
                                 "model.weights: <this run directory>")
    return cfg


def from_dict(data: Mapping[str, Any] | None, where: str = "<dict>") -> JobConfig:
    return validate(strict.build(JobConfig, data, where, ConfigError, noun="config key"), where)


def to_dict(cfg: JobConfig) -> dict[str, Any]:
    return dataclasses.asdict(cfg)


def parse_override(text: str) -> tuple[str, Any]:
    """``a.b=value`` -> ("a.b", YAML-parsed value), so ``lr=1e-3`` is a float and ``x=null`` is None."""
    key, sep, raw = text.partition("=")
    if not sep or not key.strip():
        raise ConfigError(f"override {text!r} is not of the form key.sub=value", "command line")
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError:
        value = raw
    plain = raw.strip()[:1] not in ("'", '"', "[", "{")
    if plain and "#" in raw and (value is None or (isinstance(value, str) and value != raw.strip())):
        value = raw  # YAML would drop ' #...' as a comment: keep a path like '/a #b' whole
    # YAML 1.1 reads 1e-3 as a string; numbers written that way are meant as floats.
    if isinstance(value, str):
        try:
            value = float(value) if re.fullmatch(r"[-+]?\d*\.?\d+[eE][-+]?\d+", value) else value
        except ValueError:
            pass
    return key.strip(), value


def apply_overrides(data: dict[str, Any], overrides: Iterable[str]) -> dict[str, Any]:
    """Set dotted keys in a plain dict (before validation, so errors name the key)."""
    for text in overrides:
        key, value = parse_override(text)
        node = data
        parts = key.split(".")
        for part in parts[:-1]:
            child = node.get(part)
            if child is None:
                child = node[part] = {}
            if not isinstance(child, dict):
                raise ConfigError(f"cannot set '{key}': '{part}' is not a section", "command line")
            node = child
        node[parts[-1]] = value
    return data


def split_config_args(items: Iterable[str]) -> tuple[str | None, list[str]]:
    """Command-line items: the config path is the one without '='; the rest are key.sub=value overrides."""
    items = list(items)
    paths = [i for i in items if "=" not in i]
    if len(paths) > 1:
        raise ConfigError(f"more than one config file given: {' '.join(paths)}", "command line",
                          "overrides are written key.sub=value")
    return (paths[0] if paths else None), [i for i in items if "=" in i]


def read_yaml(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}", None, "check the path; example configs are in jobs/")
    return strict.read_mapping(path, ConfigError, "job config")


def load_job(path: str | Path | None = None, overrides: Iterable[str] = ()) -> JobConfig:
    """Load a job config file (or the built-in default) and apply overrides.

    Errors name the file (or ``command line`` for an override) and the dotted key.
    """
    overrides = list(overrides)
    data = read_yaml(path) if path else {}
    where = str(path) if path else "built-in default"
    if overrides:
        data = apply_overrides(data, overrides)
        where += " + command-line overrides"
    return from_dict(data, where)


def dump_yaml(cfg: JobConfig) -> str:
    return yaml.safe_dump(to_dict(cfg), sort_keys=False, default_flow_style=None)
