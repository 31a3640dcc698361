"""YAML and ``key.sub=value`` overrides -> a validated JobConfig.

Strict on purpose: a misspelt key is the most common way a queued job wastes hours, so
every unknown key is rejected with its dotted path, the file, and the closest valid name.
"""
from __future__ import annotations

import dataclasses
import functools
import re
from pathlib import Path
from typing import Any, Iterable, Mapping

import yaml

from ..errors import ConfigError
from . import examples, strict
from .schema import CHECKS, JobConfig
from .walltime import walltime_minutes


def default_config() -> JobConfig:
    """The built-in default job: a CNN on the embedded synthetic galaxies."""
    return strict.defaults(JobConfig)


def get(cfg: JobConfig, dotted: str) -> Any:
    return functools.reduce(getattr, dotted.split("."), cfg)


def validate(cfg: JobConfig, where: str = "config", problems: list | None = None) -> JobConfig:
    """Range and choice checks that types alone cannot express.

    With a ``problems`` list every failed check is appended to it; without, the first raises.
    """
    for key, (ok, message) in CHECKS.items():
        value = get(cfg, key)
        if not ok(value):
            strict.report(ConfigError(f"'{key}' {message}, got {value!r}", where), problems)
    for check in (_check_walltime, _check_data, _check_model, _check_phases):
        try:
            check(cfg, where)
        except ConfigError as err:
            strict.report(err, problems)
    return cfg


def _check_walltime(cfg: JobConfig, where: str) -> None:
    walltime_minutes(cfg.slurm.time, "slurm.time", where)  # raises ConfigError naming the key


def _check_data(cfg: JobConfig, where: str) -> None:
    if cfg.data.source in ("folder", "torchvision", "hdf5") and not cfg.data.root:
        raise ConfigError(f"'data.root' is required when data.source is {cfg.data.source}", where)
    if cfg.data.source == "torchvision" and not cfg.data.name:
        raise ConfigError("'data.name' is required when data.source is torchvision (e.g. CIFAR10)", where)


def _check_model(cfg: JobConfig, where: str) -> None:
    from .model_names import check_model_name

    check_model_name(cfg.model.name, where)


def _check_phases(cfg: JobConfig, where: str) -> None:
    from .phases import resolve_phases

    resolve_phases(cfg, where)
    if cfg.ssl.method != "none" and (cfg.phases or cfg.train.accumulate > 1):
        raise ConfigError(f"ssl.method {cfg.ssl.method} trains the backbone in one stage without gradient accumulation",
                          where, "remove phases / train.accumulate here; fine-tune afterwards in a job with "
                                 "model.weights: <this run directory>")


def from_dict(data: Mapping[str, Any] | None, where: str = "<dict>") -> JobConfig:
    """A validated JobConfig; every unknown key, wrong type and failed check is reported in one error."""
    problems: list = []
    cfg = strict.build(JobConfig, data, where, ConfigError, noun="config key", problems=problems)
    validate(cfg, where, problems)
    strict.raise_problems(problems, ConfigError, where)
    return cfg


def to_dict(cfg: JobConfig) -> dict[str, Any]:
    return dataclasses.asdict(cfg)


def parse_override(text: str) -> tuple[str, Any]:
    """``a.b=value`` -> ("a.b", YAML-parsed value), so ``lr=1e-3`` is a float and ``x=null`` is None."""
    key, sep, raw = text.partition("=")
    if not sep or not key.strip():
        raise ConfigError(f"override {text!r} is not of the form key.sub=value", "command line")
    try:
        value = strict.load_yaml(raw) if raw.strip() else ""
    except yaml.YAMLError:
        value = raw
    plain = raw.strip()[:1] not in ("'", '"', "[", "{")
    if plain and "#" in raw and (value is None or (isinstance(value, str) and value != raw.strip())):
        value = raw  # YAML would drop ' #...' as a comment: keep a path like '/a #b' whole
    return key.strip(), value


_KEY_PART = re.compile(r"^([^\[\]]+)((?:\[\d+\])*)$")


def apply_overrides(data: dict[str, Any], overrides: Iterable[str]) -> dict[str, Any]:
    """Set dotted keys in a plain dict (before validation, so errors name the key).

    A list item is addressed by its index, ``phases[0].epochs=1``; the index one past the end adds an item.
    """
    for text in overrides:
        key, value = parse_override(text)
        node: Any = data
        steps = _key_steps(key)
        for step, next_step in zip(steps, steps[1:]):
            node = _child(node, step, {} if isinstance(next_step, str) else [], key)
        _set(node, steps[-1], value, key)
    return data


def _key_steps(key: str) -> list:
    """``phases[0].optim.lr`` -> ["phases", 0, "optim", "lr"]."""
    steps: list = []
    for part in key.split("."):
        match = _KEY_PART.match(part)
        if not match:
            raise ConfigError(f"cannot set '{key}': '{part}' is not a key name or name[index]", "command line")
        steps.append(match.group(1))
        steps += [int(i) for i in re.findall(r"\d+", match.group(2))]
    return steps


def _child(node: Any, step: str | int, empty: Any, key: str) -> Any:
    """The dict or list at ``node[step]``, created empty where missing."""
    if isinstance(step, int):
        _set(node, step, empty, key, keep=True)
    elif not isinstance(node, dict):
        raise ConfigError(f"cannot set '{key}': '{step}' is inside a list; index it first, e.g. [0]", "command line")
    elif node.get(step) is None:
        node[step] = empty
    child = node[step]
    if not isinstance(child, type(empty)):
        raise ConfigError(f"cannot set '{key}': '{step}' is not a {'list' if isinstance(empty, list) else 'section'}",
                          "command line")
    return child


def _set(node: Any, step: str | int, value: Any, key: str, keep: bool = False) -> None:
    """``node[step] = value``; a list takes an index up to one past its end (appending). ``keep``: only if new."""
    if isinstance(step, str):
        if not isinstance(node, dict):
            raise ConfigError(f"cannot set '{key}': '{step}' is inside a list; index it first", "command line")
        node[step] = value
    elif not isinstance(node, list):
        raise ConfigError(f"cannot set '{key}': [{step}] indexes something that is not a list", "command line")
    elif step > len(node):
        raise ConfigError(f"cannot set '{key}': index {step} is past the end of a list of {len(node)}",
                          "command line", f"the next item is [{len(node)}]")
    elif step == len(node):
        node.append(value)
    elif not keep:
        node[step] = value


def split_config_args(items: Iterable[str]) -> tuple[str | None, list[str]]:
    """Command-line items: the config path is the one without '='; the rest are key.sub=value overrides."""
    items = list(items)
    paths = [i for i in items if "=" not in i]
    if len(paths) > 1:
        raise ConfigError(f"more than one config file given: {' '.join(paths)}", "command line",
                          "overrides are written key.sub=value")
    return (paths[0] if paths else None), [i for i in items if "=" in i]


def read_yaml(path: str | Path) -> dict[str, Any]:
    """A job file; a missing ``jobs/NAME.yaml`` that names a shipped example is read from the package."""
    path = examples.resolve(path)
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}", None, f"check the path; {examples.MISSING_HINT}")
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
