"""Training phases resolved from a job config: what each phase trains, with which optimizer and schedule.

A config without ``phases`` is one phase (``optim``, ``schedule``, ``train.epochs``), so every
job file means what it always meant. A phase's ``optim``/``schedule`` mappings override the
job's sections key by key and are validated like them, on the login node.
"""
from __future__ import annotations

import copy
import dataclasses
import re
from dataclasses import dataclass
from typing import Union

from ..errors import ConfigError
from . import strict
from .schema import CHECKS, OptimConfig, PhaseConfig, ScheduleConfig

_TOP = re.compile(r"^top:(\d+)$")


@dataclass(frozen=True)
class Phase:
    index: int
    name: str
    epochs: int
    trainable: Union[str, tuple]   # "all" | "head" | "top:N" | tuple of fnmatch patterns
    freeze_bn: bool
    optim: OptimConfig
    schedule: ScheduleConfig
    lr_mult: tuple                 # ((pattern, factor), ...) in the order written
    layer_decay: float | None

    @property
    def trains_everything(self) -> bool:
        return self.trainable == "all"


def _section(cls, base, overrides: dict, key: str, where: str):
    merged = {**dataclasses.asdict(base), **overrides}
    obj = strict.build(cls, merged, where, ConfigError, f"{key}.")
    section = key.rsplit(".", 1)[-1]
    for check_key, (ok, message) in CHECKS.items():
        head, _, name = check_key.partition(".")
        if head == section and "." not in name and not ok(getattr(obj, name)):
            raise ConfigError(f"'{key}.{name}' {message}, got {getattr(obj, name)!r}", where)
    return obj


def _trainable(value, key: str, where: str):
    if isinstance(value, list):
        if not value or not all(isinstance(p, str) and p for p in value):
            raise ConfigError(f"'{key}' must be all, head, top:N or a non-empty list of name patterns", where)
        return tuple(value)
    if value in ("all", "head") or _TOP.match(value):
        return value
    raise ConfigError(f"'{key}' must be all, head, top:N or a list of parameter-name patterns, got {value!r}",
                      where, "e.g. trainable: head (feature extraction) or trainable: top:2")


def _phase(cfg, p: PhaseConfig, i: int, where: str) -> Phase:
    key = f"phases[{i}]"
    if p.epochs < 1:
        raise ConfigError(f"'{key}.epochs' must be >= 1, got {p.epochs}", where)
    if p.layer_decay is not None and not 0 < p.layer_decay <= 1:
        raise ConfigError(f"'{key}.layer_decay' must be in (0, 1] or null, got {p.layer_decay}", where)
    for pattern, factor in p.lr_mult.items():
        if isinstance(factor, bool) or not isinstance(factor, (int, float)) or factor < 0:
            raise ConfigError(f"'{key}.lr_mult.{pattern}' must be a number >= 0, got {factor!r}", where)
    return Phase(index=i, name=p.name or f"phase{i + 1}", epochs=p.epochs,
                 trainable=_trainable(p.trainable, f"{key}.trainable", where), freeze_bn=p.freeze_bn,
                 optim=_section(OptimConfig, cfg.optim, p.optim, f"{key}.optim", where),
                 schedule=_section(ScheduleConfig, cfg.schedule, p.schedule, f"{key}.schedule", where),
                 lr_mult=tuple((str(k), float(v)) for k, v in p.lr_mult.items()), layer_decay=p.layer_decay)


def resolve_phases(cfg, where: str = "config") -> list[Phase]:
    """The phases this job runs, each with complete optim and schedule sections."""
    if not cfg.phases:
        return [Phase(0, "train", cfg.train.epochs, "all", False, copy.deepcopy(cfg.optim),
                      copy.deepcopy(cfg.schedule), (), None)]
    if len(cfg.phases) > 1 and cfg.dist.backend == "horovod":
        raise ConfigError("several phases need dist.backend auto, gloo or nccl: Horovod's DistributedOptimizer "
                          "keeps its gradient hooks and cannot be rebuilt for a second phase", where,
                          "use DDP (dist.backend: auto), or run each phase as its own job")
    return [_phase(cfg, p, i, where) for i, p in enumerate(cfg.phases)]


def top_blocks(trainable) -> int | None:
    """N for ``top:N``, else None."""
    m = _TOP.match(trainable) if isinstance(trainable, str) else None
    return int(m.group(1)) if m else None


__all__ = ["Phase", "resolve_phases", "top_blocks"]
