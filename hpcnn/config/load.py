"""YAML and ``key.sub=value`` overrides -> a validated JobConfig.

Strict on purpose: a misspelt key is the most common way a queued job wastes hours, so
every unknown key is rejected with its dotted path, the file, and the closest valid name.
"""
from __future__ import annotations

import dataclasses
import difflib
import functools
import re
import typing
from pathlib import Path
from typing import Any, Iterable, Mapping

import yaml

from ..errors import ConfigError
from .schema import CHECKS, SECTION_TYPES, JobConfig

_WALLTIME = re.compile(r"^(?:(\d+)-)?(\d{1,3}):([0-5]\d):([0-5]\d)$|^(\d+)$")


@functools.lru_cache(maxsize=None)
def _field_types(cls) -> dict[str, Any]:
    hints = typing.get_type_hints(cls)
    return {f.name: hints[f.name] for f in dataclasses.fields(cls)}


def _suggest(name: str, valid: Iterable[str], prefix: str = "") -> str | None:
    close = difflib.get_close_matches(name, list(valid), n=1, cutoff=0.5)
    return f"did you mean '{prefix}{close[0]}'?" if close else None


def _coerce(value: Any, typ: Any, key: str, where: str) -> Any:
    """Check ``value`` against a field's annotated type; accept ints for floats."""
    origin = typing.get_origin(typ)
    if origin is typing.Union:  # Optional[X]
        args = [a for a in typing.get_args(typ) if a is not type(None)]
        if value is None:
            return None
        return _coerce(value, args[0], key, where)
    expected = origin or typ
    if expected is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if expected is bool and not isinstance(value, bool):
        raise ConfigError(f"'{key}' must be true or false, got {value!r}", where)
    if expected is int and (isinstance(value, bool) or not isinstance(value, int)):
        raise ConfigError(f"'{key}' must be an integer, got {value!r}", where)
    if expected in (float, str, list, dict) and not isinstance(value, expected):
        names = {float: "a number", str: "a string", list: "a list", dict: "a mapping"}
        raise ConfigError(f"'{key}' must be {names[expected]}, got {value!r}", where)
    return value


def _build(cls, data: Mapping[str, Any] | None, prefix: str, where: str):
    data = {} if data is None else data
    if not isinstance(data, Mapping):
        raise ConfigError(f"'{prefix.rstrip('.') or 'config'}' must be a mapping of keys, got {data!r}", where)
    types = _field_types(cls)
    kwargs = {}
    for key, value in data.items():
        dotted = f"{prefix}{key}"
        if key not in types:
            raise ConfigError(f"unknown config key '{dotted}'", where,
                              _suggest(str(key), types, prefix) or f"valid keys here: {', '.join(types)}")
        section = SECTION_TYPES.get((cls, key))
        if section is not None:
            kwargs[key] = _build(section, value, dotted + ".", where)
        else:
            kwargs[key] = _coerce(value, types[key], dotted, where)
    for (owner, key), section in SECTION_TYPES.items():
        if owner is cls and key not in kwargs:
            kwargs[key] = _build(section, None, f"{prefix}{key}.", where)
    return cls(**kwargs)


def _fill_sections(obj) -> None:
    """Dataclass defaults for nested sections are None; give them their instance."""
    for (owner, key), section in SECTION_TYPES.items():
        if isinstance(obj, owner) and getattr(obj, key) is None:
            setattr(obj, key, section())
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name)
        if dataclasses.is_dataclass(value):
            _fill_sections(value)


def default_config() -> JobConfig:
    """The built-in default job: a CNN on the embedded synthetic galaxies."""
    cfg = JobConfig()
    _fill_sections(cfg)
    return cfg


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
    if not _WALLTIME.match(cfg.slurm.time):
        raise ConfigError(f"'slurm.time' must look like HH:MM:SS, D-HH:MM:SS or minutes, got {cfg.slurm.time!r}", where)
    if cfg.data.source in ("folder", "torchvision", "hdf5") and not cfg.data.root:
        raise ConfigError(f"'data.root' is required when data.source is {cfg.data.source}", where)
    if cfg.data.source == "torchvision" and not cfg.data.name:
        raise ConfigError("'data.name' is required when data.source is torchvision (e.g. CIFAR10)", where)
    from .model_names import check_model_name

    check_model_name(cfg.model.name, where)
    return cfg


def from_dict(data: Mapping[str, Any] | None, where: str = "<dict>") -> JobConfig:
    return validate(_build(JobConfig, data, "", where), where)


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
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark else str(path)
        raise ConfigError(f"invalid YAML: {getattr(err, 'problem', err)}", where) from None
    if not isinstance(data, dict):
        raise ConfigError("a job config must be a YAML mapping of sections", str(path))
    return data


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
