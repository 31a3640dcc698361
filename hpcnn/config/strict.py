"""Strict YAML-mapping -> dataclass building, for job configs, site profiles and sweeps alike.

One promise everywhere: an unknown key names its dotted path, the file and the closest
valid name; a wrong type names the key and the value. Fields whose type is a dataclass
are nested sections (a missing one gets its defaults); ``List[SomeDataclass]`` is a list
of sections (``phases[1].epochs``). The error class is the caller's (ConfigError,
ProfileError). Also the one field helper (``doc``) every schema uses. Stdlib + PyYAML only.

Every YAML hpcnn reads goes through ``load_yaml`` (floats as YAML 1.2 reads them: ``1e-3``).
With a ``problems`` list, ``build`` collects every error instead of stopping at the first, so a
file with four mistakes is fixed in one round (``raise_problems`` reports them, one line each).
"""
from __future__ import annotations

import dataclasses
import difflib
import functools
import re
import typing
from pathlib import Path
from typing import Any, Mapping

import yaml

from ..errors import ConfigError, HpcnnError

_TYPE_NAMES = {int: "an integer", float: "a number", str: "a string", list: "a list", dict: "a mapping",
               bool: "true or false"}


def doc(default: Any, text: str, **metadata):
    """A dataclass field with a default and a one-line description (shown in docs and `profiles show`).

    A ``None`` default on a field whose type is a dataclass means "that section's defaults".
    """
    metadata = {"doc": text, **metadata}
    if isinstance(default, (list, dict)):
        return dataclasses.field(default_factory=lambda: type(default)(default), metadata=metadata)
    return dataclasses.field(default=default, metadata=metadata)


@functools.lru_cache(maxsize=None)
def field_types(cls) -> dict[str, Any]:
    hints = typing.get_type_hints(cls)
    return {f.name: hints[f.name] for f in dataclasses.fields(cls)}


def section_type(typ: Any):
    """The dataclass a field holds (a nested section), else None."""
    return typ if isinstance(typ, type) and dataclasses.is_dataclass(typ) else None


def list_section_type(typ: Any):
    """For ``List[SomeDataclass]``: SomeDataclass, else None."""
    args = typing.get_args(typ)
    return section_type(args[0]) if typing.get_origin(typ) is list and args else None


def suggest(name: str, valid, prefix: str = "") -> str | None:
    close = difflib.get_close_matches(str(name), list(valid), n=1, cutoff=0.5)
    return f"did you mean '{prefix}{close[0]}'?" if close else None


def check_type(value: Any, typ: Any, key: str, where: str | None, error: type[HpcnnError] = ConfigError) -> Any:
    """``value`` if it fits the annotated type (ints are accepted for floats), else ``error``."""
    if typing.get_origin(typ) is typing.Union:  # Optional[X], X | None, and real unions such as str | list
        if value is None:
            return None
        args = [a for a in typing.get_args(typ) if a is not type(None)]
        for arg in args[1:]:
            if isinstance(value, typing.get_origin(arg) or arg):
                return value
        typ = args[0]
    expected = typing.get_origin(typ) or typ
    if expected is typing.Any:
        return value
    if expected is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if (isinstance(value, bool) and expected is not bool) or not isinstance(value, expected):
        raise error(f"'{key}' must be {_TYPE_NAMES.get(expected, expected.__name__)}, got {value!r}", where)
    return value


def build(cls, data: Mapping[str, Any] | None, where: str | None, error: type[HpcnnError] = ConfigError,
          prefix: str = "", noun: str = "key", problems: list | None = None):
    """``cls(**data)`` with every key and type checked, sections built recursively.

    A key left out takes the dataclass default (a section: its own defaults); a field without
    a default is required. With a ``problems`` list, every error found is appended to it (the
    key keeps its default) instead of raising the first, so one run can report them all;
    the result is None when a required key is missing.
    """
    data = {} if data is None else data
    if not isinstance(data, Mapping):
        report(error(f"'{prefix.rstrip('.') or 'file'}' must be a mapping of keys, got {data!r}", where), problems)
        data = {}
    types = field_types(cls)
    kwargs = {}
    for key, value in data.items():
        dotted = f"{prefix}{key}"
        if key not in types:
            report(error(f"unknown {noun} '{dotted}'", where,
                          suggest(str(key), types, prefix) or f"valid keys here: {', '.join(types)}"), problems)
            continue
        try:
            kwargs[key] = _build_value(types[key], value, dotted, where, error, noun, problems)
        except HpcnnError as err:
            report(err, problems)
    for name, typ in types.items():
        if name not in kwargs and (sub := section_type(typ)) is not None:
            kwargs[name] = build(sub, None, where, error, f"{prefix}{name}.", noun)
    missing = [f.name for f in dataclasses.fields(cls) if f.name not in kwargs
               and f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING]
    if missing:
        return report(error(f"missing required key '{prefix}{missing[0]}'", where), problems)
    return cls(**kwargs)


def _build_value(typ: Any, value: Any, dotted: str, where: str | None, error: type[HpcnnError], noun: str,
                 problems: list | None) -> Any:
    if (sub := section_type(typ)) is not None:
        return build(sub, value, where, error, dotted + ".", noun, problems)
    if (item := list_section_type(typ)) is not None:
        if not isinstance(value, list):
            raise error(f"'{dotted}' must be a list of mappings, got {value!r}", where)
        built = [build(item, v, where, error, f"{dotted}[{i}].", noun, problems) for i, v in enumerate(value)]
        return [b for b in built if b is not None]
    return check_type(value, typ, dotted, where, error)


def report(err: HpcnnError, problems: list | None) -> None:
    """Raise ``err``, or with a ``problems`` list collect it and go on."""
    if problems is None:
        raise err
    problems.append(err)


def raise_problems(problems: list, error: type[HpcnnError], where: str | None) -> None:
    """Nothing for no problems; one: that error as it is; several: one error listing each on its own line."""
    if len(problems) == 1:
        raise problems[0]
    if problems:
        lines = [f"{p.what}{f' ({p.where})' if p.where and p.where != where else ''}"
                 f"{f' — hint: {p.hint}' if p.hint else ''}" for p in problems]
        combined = error(f"{len(problems)} errors in {where or 'the config'}; fix them all, then rerun:\n  "
                         + "\n  ".join(lines))
        combined.problems = list(problems)
        raise combined


def defaults(cls):
    """An instance with every default, sections included."""
    return build(cls, None, f"defaults of {cls.__name__}")


class YamlLoader(yaml.SafeLoader):
    """PyYAML's safe loader, reading floats as YAML 1.2 does.

    YAML 1.1 (PyYAML) reads ``1e-3``, ``5e+2`` and ``-.5`` as strings; everybody means numbers.
    A subclass, so PyYAML's global resolvers stay as they are for other code.
    """


YamlLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"""^[-+]?(?:[0-9][0-9_]*(?:\.[0-9_]*)?|\.[0-9][0-9_]*)[eE][-+]?[0-9]+$
                   |^[-+]?\.[0-9][0-9_]*$""", re.X),
    list("-+0123456789."))


def load_yaml(text: str) -> Any:
    """YAML text -> Python objects: the one YAML reader for job files, profiles, sweeps, studies and overrides."""
    return yaml.load(text, Loader=YamlLoader)  # noqa: S506 (a SafeLoader subclass)


def read_mapping(path: str | Path, error: type[HpcnnError] = ConfigError, what: str = "config") -> dict:
    """A YAML file that must hold a mapping; a missing file, bad YAML (file:line) or a list are errors."""
    path = Path(path)
    try:
        data = load_yaml(path.read_text())
    except FileNotFoundError:
        raise error(f"{what} file not found: {path}", None, "check the path") from None
    except OSError as err:
        raise error(f"cannot read {what}: {err.strerror}", str(path)) from None
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        raise error(f"invalid YAML: {getattr(err, 'problem', err)}",
                    f"{path}:{mark.line + 1}" if mark else str(path)) from None
    if data is not None and not isinstance(data, dict):
        raise error(f"a {what} must be a YAML mapping of keys", str(path))
    return data or {}  # an empty file: no keys


def load_named(cls, path: str | Path, error: type[HpcnnError], what: str):
    """A named YAML file (profile, sweep) as ``cls``: ``name`` defaults to the file's stem, ``source`` is the path.

    A missing path that names a shipped example (``jobs/sweep_lr.yaml``) reads the example.
    """
    from . import examples

    path = examples.resolve(path, what)
    data = read_mapping(path, error, what)
    data.setdefault("name", path.stem)
    if "source" in data:
        raise error("unknown key 'source' (set by the loader)", str(path))
    problems: list = []
    built = build(cls, {**data, "source": str(path)}, str(path), error, problems=problems)
    raise_problems(problems, error, str(path))
    return built


def field_docs(cls) -> list[tuple[str, Any, str]]:
    """(name, default, doc) for every field: used by `profiles show` and the reference docs."""
    out = []
    for f in dataclasses.fields(cls):
        default = f.default if f.default is not dataclasses.MISSING else (
            f.default_factory() if f.default_factory is not dataclasses.MISSING else None)
        out.append((f.name, default, f.metadata.get("doc", "")))
    return out


__all__ = ["build", "check_type", "defaults", "doc", "field_docs", "field_types", "list_section_type", "load_named",
           "load_yaml", "raise_problems", "read_mapping", "report", "section_type", "suggest"]
