"""The search space: one entry per dotted job-config key, checked against the job schema, then sampled.

    optim.lr:       {type: float, low: 1.0e-4, high: 0.1, log: true}
    model.dropout:  {type: float, low: 0.0, high: 0.5}
    train.batch_size: {type: categorical, choices: [32, 64, 128]}
    optim.name:     {type: categorical, choices: [sgd, adamw]}
    optim.momentum: {type: float, low: 0.8, high: 0.99, when: {optim.name: sgd}}   # conditional key

Every bound and every choice is checked on the login node as an override of the job config
(type, range, the rules that relate keys), with the key named, so a search never queues a
trial its job would reject. Sampling goes through an Optuna trial (``suggest_*``), which is
also how a requeued worker gets its running trial's parameters back unchanged.
"""
from __future__ import annotations

import copy
import json
from dataclasses import dataclass
from typing import Any, Optional

from ..config import JobConfig, apply_overrides, from_dict, strict
from ..config.strict import doc
from ..errors import ConfigError
from ..slurm.jobs.task_checks import leaf_type

TYPES = ("float", "int", "categorical")


@dataclass
class ParamSpec:
    type: str = doc("float", "float | int | categorical")
    low: Optional[float] = doc(None, "float/int: lowest value (inclusive)")
    high: Optional[float] = doc(None, "float/int: highest value (inclusive)")
    log: bool = doc(False, "float/int: sample on a log scale (low must be > 0)")
    step: Optional[float] = doc(None, "float/int: sample on this grid step (not with log)")
    choices: list = doc([], "categorical: the values to choose from")
    grid: list = doc([], "float/int: the values the grid sampler tries (grid sampler only)")
    when: dict = doc({}, "sample this key only when these other keys have these values ({optim.name: sgd})")


def override_text(key: str, value: Any) -> str:
    return f"{key}={json.dumps(value)}"


def parse_space(data: Any, where: str) -> dict[str, ParamSpec]:
    """{key: ParamSpec} from the search file's ``space`` mapping; shape errors name ``space.KEY``."""
    if not isinstance(data, dict) or not data:
        raise ConfigError("'space' must be a non-empty mapping {dotted.config.key: {type: ..., ...}}", where)
    problems: list = []
    space: dict[str, ParamSpec] = {}
    for key, entry in data.items():
        built = strict.build(ParamSpec, entry, where, ConfigError, prefix=f"space.{key}.", problems=problems)
        if built is not None:
            space[str(key)] = built
    strict.raise_problems(problems, ConfigError, where)
    return space


def _range_problem(p: ParamSpec) -> str | None:
    if p.type == "categorical":
        if not p.choices:
            return "categorical needs a non-empty 'choices' list"
        if p.low is not None or p.high is not None or p.log:
            return "categorical takes 'choices', not low/high/log"
        return None
    if p.low is None or p.high is None:
        return f"{p.type} needs 'low' and 'high'"
    if p.type == "int" and (p.low != int(p.low) or p.high != int(p.high)):
        return f"int bounds must be whole numbers, got low={p.low}, high={p.high}"
    if p.low > p.high:
        return f"empty range: low={p.low} > high={p.high}"
    if p.log and p.low <= 0:
        return f"log scale needs low > 0, got low={p.low}"
    if p.log and p.step is not None:
        return "'step' and 'log' cannot be combined"
    if p.step is not None and p.step <= 0:
        return f"'step' must be > 0, got {p.step}"
    return None


def check_shape(space: dict[str, ParamSpec], where: str) -> None:
    """Types, ranges and conditions, before the job schema is asked (all problems at once)."""
    problems = []
    for key, p in space.items():
        field = f"space.{key}"
        if p.type not in TYPES:
            problems.append(ConfigError(f"'{field}.type' must be one of {', '.join(TYPES)}, got {p.type!r}", where))
            continue
        if leaf_type(key) is None:
            problems.append(ConfigError(f"'{field}': '{key}' is not a job config key", where, _key_hint(key)))
            continue
        if key.split(".")[0] == "slurm":
            problems.append(ConfigError(f"'{field}': a search cannot vary Slurm resources", where,
                                        "set the one request of every worker under workers.slurm"))
        problem = _range_problem(p)
        if problem:
            problems.append(ConfigError(f"'{field}': {problem}", where))
        for cond_key in p.when:
            if cond_key not in space or space[cond_key].type != "categorical":
                problems.append(ConfigError(f"'{field}.when': '{cond_key}' must be a categorical key of the space",
                                            where))
            elif p.when[cond_key] not in space[cond_key].choices:
                problems.append(ConfigError(f"'{field}.when': {p.when[cond_key]!r} is not one of "
                                            f"space.{cond_key}.choices", where))
    strict.raise_problems(problems, ConfigError, where)


def _key_hint(key: str) -> str | None:
    """'did you mean ...' for a dotted key that is not in the job schema (its section's closest field)."""
    head, _, leaf = key.rpartition(".")
    cls: Any = JobConfig
    for part in head.split(".") if head else []:
        cls = strict.section_type(strict.field_types(cls).get(part)) if cls else None
    if cls is None:
        return strict.suggest(head, strict.field_types(JobConfig))
    return strict.suggest(leaf, strict.field_types(cls), f"{head}." if head else "")


def values_to_check(p: ParamSpec) -> list:
    """The values a trial can take at the edges: bounds, every choice, every grid value."""
    if p.type == "categorical":
        return list(p.choices)
    number = int if p.type == "int" else float
    bounds = [number(p.low), number(p.high)]
    return bounds + [v for v in p.grid if v not in bounds]


def check_values(space: dict[str, ParamSpec], base_data: dict, where: str) -> None:
    """Every value each key can take, as an override of the job config (its condition applied): errors name it."""
    problems = []
    for key, p in space.items():
        condition = [override_text(k, v) for k, v in p.when.items()]
        for value in values_to_check(p):
            text = override_text(key, value)
            try:
                from_dict(apply_overrides(copy.deepcopy(base_data), condition + [text]),
                          f"{where}: space.{key} value {value!r}")
            except ConfigError as err:
                problems.append(err)
    strict.raise_problems(problems, ConfigError, where)


def active(p: ParamSpec, chosen: dict) -> bool:
    return all(chosen.get(k) == v for k, v in p.when.items())


def suggest(trial, space: dict[str, ParamSpec]) -> list[str]:
    """Sample (or read back) one trial's parameters; the overrides that make its job config.

    Keys are visited in file order, so a condition's key (listed first) is known when it is read.
    """
    chosen: dict = {}
    for key, p in space.items():
        if not active(p, chosen):
            continue
        if p.type == "categorical":
            chosen[key] = trial.suggest_categorical(key, p.choices)
        elif p.type == "int":
            chosen[key] = trial.suggest_int(key, int(p.low), int(p.high), step=int(p.step or 1), log=p.log)
        else:
            chosen[key] = trial.suggest_float(key, float(p.low), float(p.high), step=p.step, log=p.log)
    return [override_text(k, v) for k, v in chosen.items()]


def grid_space(space: dict[str, ParamSpec], where: str) -> dict[str, list]:
    """The grid sampler's {key: values}: choices, or a float/int key's ``grid`` list."""
    grid = {}
    for key, p in space.items():
        if p.when:
            raise ConfigError(f"'space.{key}.when': the grid sampler takes no conditional keys", where,
                              "use sampler tpe or random, or drop the condition")
        values = p.choices if p.type == "categorical" else p.grid
        if not values:
            raise ConfigError(f"'space.{key}': the grid sampler needs its values: add 'grid: [v1, v2, ...]'", where)
        grid[key] = list(values)
    return grid


__all__ = ["ParamSpec", "active", "check_shape", "check_values", "grid_space", "parse_space", "suggest"]
