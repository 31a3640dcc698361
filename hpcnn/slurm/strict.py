"""Strict YAML-mapping -> dataclass building for profiles and sweeps.

Same promise as job configs: an unknown key names its dotted path, the file and the
closest valid name; a wrong type names the key and the value. The error class is the
caller's (ProfileError for profiles, ConfigError for sweeps).
"""
from __future__ import annotations

import dataclasses
import difflib
import typing
from pathlib import Path
from typing import Any, Mapping

import yaml

from ..errors import HpcnnError

_TYPE_NAMES = {int: "an integer", float: "a number", str: "a string", list: "a list", dict: "a mapping",
               bool: "true or false"}


def suggest(name: str, valid, prefix: str = "") -> str | None:
    close = difflib.get_close_matches(str(name), list(valid), n=1, cutoff=0.5)
    return f"did you mean '{prefix}{close[0]}'?" if close else None


def _check_type(value: Any, typ: Any, key: str, where: str, error: type[HpcnnError]) -> Any:
    if typing.get_origin(typ) is typing.Union:  # Optional[X] (and X | None)
        if value is None:
            return None
        args = [a for a in typing.get_args(typ) if a is not type(None)]
        for arg in args[1:]:  # a real union such as str | list: accept any member
            if isinstance(value, typing.get_origin(arg) or arg):
                return value
        typ = args[0]
    expected = typing.get_origin(typ) or typ
    if expected is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    bad = (isinstance(value, bool) and expected is not bool) or not isinstance(value, expected)
    if bad:
        raise error(f"'{key}' must be {_TYPE_NAMES.get(expected, expected.__name__)}, got {value!r}", where)
    return value


def build(cls, data: Mapping[str, Any], where: str, error: type[HpcnnError], prefix: str = ""):
    """``cls(**data)`` with every key and type checked; missing keys take the dataclass default."""
    if not isinstance(data, Mapping):
        raise error(f"'{prefix.rstrip('.') or 'file'}' must be a mapping of keys, got {data!r}", where)
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    kwargs = {}
    for key, value in data.items():
        if key not in fields:
            raise error(f"unknown key '{prefix}{key}'", where,
                        suggest(str(key), fields, prefix) or f"valid keys: {', '.join(fields)}")
        kwargs[key] = _check_type(value, hints[key], f"{prefix}{key}", where, error)
    missing = [n for n, f in fields.items() if n not in kwargs and f.default is dataclasses.MISSING
               and f.default_factory is dataclasses.MISSING]
    if missing:
        raise error(f"missing required key '{prefix}{missing[0]}'", where)
    return cls(**kwargs)


def read_mapping(path: Path, error: type[HpcnnError], what: str) -> dict:
    """A YAML file that must hold a mapping; YAML errors carry file:line."""
    try:
        data = yaml.safe_load(path.read_text())
    except OSError as err:
        raise error(f"cannot read {what}: {err.strerror}", str(path)) from None
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        raise error(f"invalid YAML: {getattr(err, 'problem', err)}",
                    f"{path}:{mark.line + 1}" if mark else str(path)) from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise error(f"a {what} must be a YAML mapping of keys", str(path))
    return data


def field_docs(cls) -> list[tuple[str, Any, str]]:
    """(name, default, doc) for every field: used by `profiles show` and the docs."""
    out = []
    for f in dataclasses.fields(cls):
        default = f.default if f.default is not dataclasses.MISSING else (
            f.default_factory() if f.default_factory is not dataclasses.MISSING else None)
        out.append((f.name, default, f.metadata.get("doc", "")))
    return out
