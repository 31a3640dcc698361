"""Sweeps: one base job config, a grid (or an explicit list) of overrides -> validated task configs.

Pure (reads YAML, runs nothing). Every task's config is validated exactly like a job
config, so a typo in the sweep fails on the login node with the task and key named.
All tasks of a sweep share one Slurm array, hence one resource request: grid and run
entries may not touch ``slurm.*`` (set those in the sweep's ``slurm:`` mapping; tasks that
need different requests are a group, ``hpcnn.submit_group``).

    name: lr-dropout
    base: default.yaml            # job config, relative to this file; omit for the built-in default
    overrides: [train.epochs=4]   # applied to every task
    slurm: {time: "00:20:00"}     # the one resource request of the array
    grid:                         # cartesian product, first key varies slowest
      optim.lr: [0.001, 0.003]
      model.dropout: [0.1, 0.3]
    # runs: [[optim.lr=0.001], [optim.lr=0.003, model.dropout=0.1]]   # instead of grid
    max_parallel: 4               # at most this many tasks run at once (%K)
    metric: val.accuracy          # what `hpcnn results` ranks by: any numeric key of summary.json
    mode: max
"""
from __future__ import annotations

import copy
import itertools
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

from ...config import JobConfig, apply_overrides, examples, from_dict, read_yaml, strict
from ...config.schema import SlurmConfig
from ...config.strict import doc
from ...errors import ConfigError
from .task_checks import check_tasks


@dataclass
class SweepSpec:
    name: str = doc("sweep", "sweep name: used for the sweep directory and the array's job name")
    base: Optional[str] = doc(None, "job config the tasks start from (relative to the sweep file); null = built-in")
    overrides: list = doc([], "key.sub=value overrides applied to every task")
    slurm: dict = doc({}, "the array's resource request: keys of a job config's slurm section")
    grid: dict = doc({}, "{dotted.key: [values]}: one task per combination")
    runs: list = doc([], "explicit tasks: a list of override lists (instead of grid)")
    max_parallel: Optional[int] = doc(None, "most tasks running at once (Slurm's %K throttle); null = no limit")
    metric: str = doc("val.accuracy", "summary.json key `hpcnn results` ranks by: any numeric one, dotted "
                                      "(val.accuracy, images_per_second, gpu.energy_j)")
    mode: str = doc("max", "max | min: whether a bigger metric is better")
    source: Optional[str] = doc(None, "file the sweep was read from (set by the loader)")


@dataclass
class SweepTask:
    """One task: its overrides of the sweep's base. Its full config is built only when asked for
    (the login node checks overrides against the base; the job builds its own config)."""

    index: int
    overrides: list[str]
    base_data: dict = field(repr=False, default_factory=dict)
    where: str = "sweep"
    _config: Optional[JobConfig] = field(default=None, repr=False, compare=False)

    @property
    def config(self) -> JobConfig:
        if self._config is None:
            data = apply_overrides(copy.deepcopy(self.base_data), self.overrides)
            self._config = from_dict(data, f"{self.where}, task {self.index} [{self.label}]")
        return self._config

    @property
    def label(self) -> str:
        return " ".join(self.overrides) or "(base)"


def override_text(key: str, value: Any) -> str:
    """key=value that parse_override reads back to the same value (JSON is valid YAML)."""
    return f"{key}={json.dumps(value)}"


def _check_keys(keys, where: str, what: str) -> None:
    for key in keys:
        if not isinstance(key, str) or "=" in key or not key:
            raise ConfigError(f"{what}: {key!r} is not a dotted config key", where)
        if key.split(".")[0] == "slurm":
            raise ConfigError(f"{what}: '{key}' varies a Slurm resource, but all tasks of a sweep share one array "
                              "request", where, "set it once in the sweep's `slurm:` mapping, or submit tasks with "
                                                "different requests as a group (hpcnn.submit_group)")


def _validate(spec: SweepSpec, where: str) -> None:
    if spec.grid and spec.runs:
        raise ConfigError("a sweep has either 'grid' or 'runs', not both", where)
    if not spec.grid and not spec.runs:
        raise ConfigError("a sweep needs 'grid' ({key: [values]}) or 'runs' (list of override lists)", where)
    _check_keys(spec.grid, where, "grid")
    for key, values in spec.grid.items():
        if not isinstance(values, list) or not values:
            raise ConfigError(f"grid.{key} must be a non-empty list of values, got {values!r}", where)
    for i, run in enumerate(spec.runs):
        if not isinstance(run, list) or not all(isinstance(o, str) and "=" in o for o in run):
            raise ConfigError(f"runs[{i}] must be a list of key.sub=value strings, got {run!r}", where)
        _check_keys([o.partition("=")[0].strip() for o in run], where, f"runs[{i}]")
    valid = set(SlurmConfig.__dataclass_fields__)
    for key in spec.slurm:
        if key not in valid:
            raise ConfigError(f"unknown key 'slurm.{key}'", where,
                              strict.suggest(key, valid, "slurm.") or f"valid keys: {', '.join(sorted(valid))}")
    if spec.max_parallel is not None and spec.max_parallel < 1:
        raise ConfigError(f"'max_parallel' must be >= 1 or null, got {spec.max_parallel}", where)
    check_ranking(spec.metric, spec.mode, where)


def check_ranking(metric: Any, mode: Any, where: str | None = None) -> None:
    """What results are ranked by: any dotted key of summary.json, bigger (max) or smaller (min) first."""
    if mode not in ("max", "min"):
        raise ConfigError(f"'mode' must be max or min, got {mode!r}", where)
    if not isinstance(metric, str) or not metric.strip() or any(not part for part in metric.split(".")):
        raise ConfigError(f"'metric' must be a dotted summary.json key such as val.accuracy or images_per_second, "
                          f"got {metric!r}", where)


def load_sweep(path: str | Path) -> SweepSpec:
    path = examples.resolve(path, "sweep")  # a missing jobs/NAME.yaml may name a shipped example
    if not path.is_file():
        raise ConfigError(f"sweep file not found: {path}", None, "example: jobs/sweep_lr.yaml")
    spec = strict.load_named(SweepSpec, path, ConfigError, "sweep")
    _validate(spec, str(path))
    return spec


def sweep_from_dict(data: dict, where: str = "<sweep>") -> SweepSpec:
    spec = strict.build(SweepSpec, data, where, ConfigError)
    _validate(spec, where)
    return spec


def task_overrides(spec: SweepSpec) -> list[list[str]]:
    if spec.runs:
        return [list(run) for run in spec.runs]
    keys = list(spec.grid)
    return [[override_text(k, v) for k, v in zip(keys, combo)]
            for combo in itertools.product(*(spec.grid[k] for k in keys))]


def base_dict(spec: SweepSpec, extra_overrides=(), base_data: dict | None = None) -> tuple[dict, str]:
    """The base job config as a plain dict (+ sweep-wide and slurm overrides) and where it came from."""
    where = spec.source or "sweep"
    data: dict = copy.deepcopy(base_data) if base_data is not None else {}
    if base_data is None and spec.base:
        base = Path(spec.source).parent / spec.base if spec.source else Path(spec.base)  # relative to the sweep file
        data = read_yaml(base)
        where = f"{base} (via {where})"
    slurm = [override_text(f"slurm.{k}", v) for k, v in spec.slurm.items()]
    apply_overrides(data, [*spec.overrides, *slurm, *extra_overrides])
    return data, where


def expand(spec: SweepSpec, extra_overrides=(), base_data: dict | None = None) -> tuple[JobConfig, list[SweepTask]]:
    """(base config, one checked task per override list). Errors name the task and its overrides.

    The base is validated once; each task's overrides are checked against it (type, range,
    and the checks that relate several keys when a task changes one of those), so a
    10,000-task grid costs a few distinct values, not 10,000 config loads.
    """
    data, where = base_dict(spec, extra_overrides, base_data)
    base = from_dict(copy.deepcopy(data), where)
    lists = task_overrides(spec)
    check_tasks(base, data, lists, where)
    return base, [SweepTask(index, overrides, data, where) for index, overrides in enumerate(lists)]


def chunks(n_tasks: int, max_array_size: int) -> list[tuple[int, int]]:
    """[(offset, count)]: arrays of at most max_array_size tasks. MaxArraySize bounds the array
    *index*, so every chunk restarts at 0 and keeps its offset."""
    if max_array_size < 1:
        raise ConfigError(f"max_array_size must be >= 1, got {max_array_size}")
    return [(start, min(max_array_size, n_tasks - start)) for start in range(0, n_tasks, max_array_size)]


__all__ = ["SweepSpec", "SweepTask", "base_dict", "check_ranking", "chunks", "expand", "load_sweep",
           "override_text", "sweep_from_dict", "task_overrides"]
