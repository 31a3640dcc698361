"""The search file: strict YAML through hpcnn's one loader, every mistake named before anything is queued.

    name: digits-lr
    job: digits.yaml                  # job config, relative to this file; omit for the built-in default
    overrides: [train.epochs=6]       # applied to every trial
    metric: val.accuracy              # default: the job's train.early_stopping.metric
    direction: maximize               # default: from train.early_stopping.mode
    space: {...}                      # see hpcnn.tune.space
    budget: {trials: 16}              # and/or gpu_hours: 4.0
    sampler: {name: tpe, seed: 0}     # tpe | random | grid
    pruner: {name: asha, min_epochs: 2, reduction_factor: 3}   # asha | hyperband | median | none
    workers: {count: 2, slurm: {time: "00:30:00", gpus_per_node: 1}}
"""
from __future__ import annotations

import copy
import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from ..config import JobConfig, apply_overrides, from_dict, read_yaml, strict
from ..config.schema import SlurmConfig
from ..config.strict import doc
from ..errors import ConfigError
from . import space as space_mod

SAMPLERS = ("tpe", "random", "grid")
PRUNERS = ("asha", "hyperband", "median", "none")


@dataclass
class Budget:
    trials: Optional[int] = doc(None, "stop after this many finished trials (completed or pruned)")
    gpu_hours: Optional[float] = doc(None, "stop once finished trials used this many GPU-hours (CPU jobs: "
                                           "node-hours)")


@dataclass
class SamplerSpec:
    name: str = doc("tpe", "tpe | random | grid")
    seed: Optional[int] = doc(None, "seed; each worker adds its index, so workers never draw alike")
    startup_trials: int = doc(5, "tpe: random trials before the model is used")


@dataclass
class PrunerSpec:
    name: str = doc("asha", "asha (asynchronous successive halving: trials paused at rungs, the best resumed) | "
                            "hyperband (Optuna's: several brackets, pruning final) | median | none")
    min_epochs: int = doc(2, "asha, hyperband: the first rung (epochs); median: epochs before pruning starts")
    reduction_factor: int = doc(3, "asha, hyperband: the best 1/reduction_factor of a rung go on to the next "
                                   "(rungs at min_epochs x reduction_factor^k)")
    startup_trials: int = doc(3, "median: trials that are never pruned")


@dataclass
class WorkersSpec:
    count: int = doc(2, "K: Slurm array tasks pulling trials (at most K trials run at once)")
    slurm: dict = doc({}, "the resources one trial needs: keys of a job config's slurm section")
    heartbeat_s: float = doc(30.0, "how often a running trial says it is alive")
    grace_s: float = doc(300.0, "a running trial silent this long is marked failed and retried")


@dataclass
class SearchSpec:
    name: str = doc("search", "search name: the search directory and the array's job name")
    job: Optional[str] = doc(None, "job config the trials start from (relative to this file); null = built-in")
    overrides: list = doc([], "key.sub=value overrides applied to every trial")
    metric: Optional[str] = doc(None, "metric to optimise; null = the job's train.early_stopping.metric")
    direction: Optional[str] = doc(None, "maximize | minimize; null = from train.early_stopping.mode")
    space: dict = doc({}, "{dotted.config.key: {type, low, high, log, step, choices, grid, when}}")
    budget: Budget = doc(None, "when the search ends")
    sampler: SamplerSpec = doc(None, "how parameters are chosen")
    pruner: PrunerSpec = doc(None, "how bad trials are stopped early")
    workers: WorkersSpec = doc(None, "the Slurm array of workers")
    source: Optional[str] = doc(None, "file the search was read from (set by the loader)")


@dataclass
class Search:
    """A checked search: the spec, its space, and the job config every trial starts from."""

    spec: SearchSpec
    space: dict
    base_data: dict
    base: JobConfig
    metric: str
    direction: str


def _check_spec(spec: SearchSpec, where: str) -> list:
    budget, workers, pruner, sampler = spec.budget, spec.workers, spec.pruner, spec.sampler
    valid = set(SlurmConfig.__dataclass_fields__)
    rules = [  # (holds, what is wrong, hint), in the order the problems are listed
        (spec.direction in (None, "maximize", "minimize"),
         f"'direction' must be maximize or minimize, got {spec.direction!r}", None),
        (sampler.name in SAMPLERS, f"'sampler.name' must be one of {', '.join(SAMPLERS)}, got {sampler.name!r}", None),
        (pruner.name in PRUNERS, f"'pruner.name' must be one of {', '.join(PRUNERS)}, got {pruner.name!r}", None),
        (budget.trials is not None or budget.gpu_hours is not None, "'budget' needs trials and/or gpu_hours",
         "budget: {trials: 16}"),
        (budget.trials is None or budget.trials >= 1, f"'budget.trials' must be >= 1, got {budget.trials}", None),
        (budget.gpu_hours is None or budget.gpu_hours > 0, f"'budget.gpu_hours' must be > 0, got {budget.gpu_hours}",
         None),
        (workers.count >= 1, f"'workers.count' must be >= 1, got {workers.count}", None),
        (0 < workers.heartbeat_s < workers.grace_s, "'workers.grace_s' must exceed 'workers.heartbeat_s' > 0", None),
        *[(key in valid, f"unknown key 'workers.slurm.{key}'", strict.suggest(key, valid, "workers.slurm."))
          for key in workers.slurm],
        (pruner.min_epochs >= 1, f"'pruner.min_epochs' must be >= 1, got {pruner.min_epochs}", None),
        (pruner.reduction_factor >= 2, f"'pruner.reduction_factor' must be >= 2, got {pruner.reduction_factor}", None),
    ]
    return [ConfigError(what, where, hint) for holds, what, hint in rules if not holds]


def base_data(spec: SearchSpec) -> tuple[dict, str]:
    """The job config every trial starts from, as plain data (+ overrides and workers.slurm), and its origin."""
    where = spec.source or "search"
    data: dict = {}
    if spec.job:
        job = Path(spec.job)
        if not job.is_absolute() and spec.source:
            job = Path(spec.source).parent / job
        data = read_yaml(job)
        where = f"{job} (via {where})"
    slurm = [space_mod.override_text(f"slurm.{k}", v) for k, v in spec.workers.slurm.items()]
    return apply_overrides(data, list(spec.overrides) + slurm), where


def _metric(spec: SearchSpec, base: JobConfig, where: str) -> tuple[str, str]:
    monitor = base.train.early_stopping
    metric = spec.metric or monitor.metric
    if not metric.startswith("val.") or len(metric.split(".")) != 2:
        raise ConfigError(f"'metric' must be a validation metric such as val.accuracy or val.loss, got {metric!r}",
                          where)
    if spec.direction:
        direction = spec.direction
    elif not spec.metric:
        direction = "maximize" if monitor.mode == "max" else "minimize"
    else:
        direction = "minimize" if metric.endswith("loss") else "maximize"
    return metric, direction


def check(spec: SearchSpec, where: str) -> Search:
    """Everything about a search that can be known before a worker starts; every mistake names its key."""
    strict.raise_problems(_check_spec(spec, where), ConfigError, where)
    space = space_mod.parse_space(spec.space, where)
    space_mod.check_shape(space, where)
    if spec.sampler.name == "grid":
        space_mod.grid_space(space, where)
    data, job_where = base_data(spec)
    base = from_dict(copy.deepcopy(data), job_where)
    space_mod.check_values(space, data, where)
    metric, direction = _metric(spec, base, where)
    return Search(spec, space, data, base, metric, direction)


def load_search(path: str | Path) -> Search:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"search file not found: {path}", None, "example: docs/tuning.md")
    spec = strict.load_named(SearchSpec, path, ConfigError, "search")
    return check(spec, str(path))


def search_from_dict(data: dict, where: str = "<search>") -> Search:
    problems: list = []
    spec = strict.build(SearchSpec, data, where, ConfigError, problems=problems)
    strict.raise_problems(problems, ConfigError, where)
    return check(spec, where)


RECORD = "search.json"


def to_record(search: Search) -> dict:
    """What the search directory keeps (``search.json``): workers rebuild the search from it, not from files."""
    return {"kind": "tune", "name": search.spec.name, "spec": dataclasses.asdict(search.spec),
            "base_config": search.base_data, "metric": search.metric, "direction": search.direction}


def from_record(data: dict, where: str) -> Search:
    spec = strict.build(SearchSpec, data["spec"], where, ConfigError)
    space = space_mod.parse_space(spec.space, where)
    base = from_dict(copy.deepcopy(data["base_config"]), where)
    return Search(spec, space, data["base_config"], base, data["metric"], data["direction"])


def read_record(search_dir: str | Path) -> Search:
    path = Path(search_dir) / RECORD
    if not path.is_file():
        raise ConfigError(f"not a search directory (no {RECORD})", str(search_dir),
                          "pass the directory `hpcnn tune` printed")
    return from_record(json.loads(path.read_text()), str(path))


__all__ = ["RECORD", "Budget", "PrunerSpec", "SamplerSpec", "Search", "SearchSpec", "WorkersSpec", "check",
           "from_record", "load_search", "read_record", "search_from_dict", "to_record"]
