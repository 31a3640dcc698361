"""Checking many tasks' overrides against one validated base config, without loading each task in full.

A sweep's tasks differ from its base only in their overrides. A full config load per task
(type-check every field, every range, every cross-key rule) made a 10,000-task grid cost
seconds on the login node. Instead, each *distinct* override is checked once: a plain
field's type and range against the schema, anything else (an unknown key, ``phases[0].x``,
a key read by a rule that relates several keys) by loading base + that one override. Only
a task that changes two or more such related keys is loaded in full (once per distinct
combination). The job still loads its config in full before it trains.
"""
from __future__ import annotations

import copy
import functools
import json
import math
from typing import Any, Sequence

from ...config import JobConfig, apply_overrides, from_dict, parse_override, strict
from ...config.schema import CHECKS
from ...errors import ConfigError, HpcnnError

# Keys that validate() reads together with other keys (data source/root/name, model name,
# phases and what they need, walltime): a task changing two of them is loaded in full.
RELATED_KEYS = ("data.source", "data.root", "data.name", "model.name", "phases", "dist.backend", "ssl.method",
                "train.accumulate", "train.epochs", "slurm.")
# Keys pre-flight never reads: tasks differing only in these share the base's pre-flight.
PREFLIGHT_FREE = ("optim.", "schedule.", "model.dropout", "seed", "name", "train.epochs")


@functools.lru_cache(maxsize=4096)
def leaf_type(key: str) -> Any:
    """The annotated type of a plain field ``section.sub.field``, or None (unknown key, list item, section)."""
    cls: Any = JobConfig
    *sections, name = key.split(".")
    for part in sections:
        cls = strict.section_type(strict.field_types(cls).get(part))  # None: unknown, or not a section
        if cls is None:
            return None
    typ = strict.field_types(cls).get(name)
    return None if typ is None or strict.section_type(typ) or strict.list_section_type(typ) else typ


def _related(key: str, base: JobConfig) -> bool:
    if base.phases and key.startswith(("optim.", "schedule.")):
        return True  # phases merge their optim/schedule over these
    return key.startswith(RELATED_KEYS)


def _task_where(where: str, index: int, overrides: Sequence[str]) -> str:
    return f"{where}, task {index} [{' '.join(overrides)}]"


def check_tasks(base: JobConfig, data: dict, task_lists: Sequence[Sequence[str]], where: str) -> None:
    """Every task's overrides, checked against the validated ``base`` (from ``data``); all errors at once."""
    problems: list[HpcnnError] = []
    verdict: dict[str, str] = {}   # override text -> "ok" | "related" | "bad"
    combos: set[tuple] = set()
    for index, overrides in enumerate(task_lists):
        for text in overrides:
            if text not in verdict:
                verdict[text] = _check_one(base, data, text, _task_where(where, index, overrides), problems)
        related = tuple(o for o in overrides if verdict[o] == "related")
        if len(related) > 1 and related not in combos and "bad" not in (verdict[o] for o in overrides):
            combos.add(related)
            try:
                from_dict(apply_overrides(copy.deepcopy(data), related), _task_where(where, index, overrides))
            except ConfigError as err:
                problems.append(err)
    strict.raise_problems(problems, ConfigError, where)


def _parse(text: str) -> tuple[str, Any]:
    """parse_override, fast for the JSON values grids are written as (JSON is YAML; NaN/Infinity are not)."""
    key, sep, raw = text.partition("=")
    try:
        value = json.loads(raw)
    except ValueError:
        return parse_override(text)
    if not sep or not key.strip() or (isinstance(value, float) and not math.isfinite(value)):
        return parse_override(text)
    return key.strip(), value


def _check_one(base: JobConfig, data: dict, text: str, where: str, problems: list) -> str:
    key, value = _parse(text)
    typ = leaf_type(key)
    try:
        if typ is not None and not _related(key, base):  # a plain field: its type and range, no config load
            checked = strict.check_type(value, typ, key, where)
            rule = CHECKS.get(key)
            if rule is not None and not rule[0](checked):
                raise ConfigError(f"'{key}' {rule[1]}, got {checked!r}", where)
            return "ok"
        from_dict(apply_overrides(copy.deepcopy(data), [text]), where)
        return "related"
    except ConfigError as err:
        problems.append(err)
        return "bad"


def preflight_configs(base: JobConfig, tasks: Sequence) -> list[JobConfig]:
    """The configs pre-flight must see: the base, plus one task per distinct set of overrides it reads."""
    configs, seen = [base], set()
    for task in tasks:
        relevant = tuple(o for o in task.overrides if not o.partition("=")[0].strip().startswith(PREFLIGHT_FREE))
        if relevant and relevant not in seen:
            seen.add(relevant)
            configs.append(task.config)
    return configs


__all__ = ["PREFLIGHT_FREE", "RELATED_KEYS", "check_tasks", "leaf_type", "preflight_configs"]
