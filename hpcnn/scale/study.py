"""Study files: which job, weak or strong scaling, which sizes, how to bench, what to expect.

    name: resnet_small                 # default: the file name
    config: ../resnet_small.yaml       # job config, relative to this file; omit for the built-in default
    overrides: [data.image_size=64]    # applied to every point
    mode: strong                       # strong: the global batch is fixed, each rank gets global/N
    batch_size: 256                    #   weak: each rank keeps this batch; null = the config's train.batch_size
    sizes:                             # shorthand: 1,2,4,8 GPUs on one node, then 2,4,8,16 full nodes
      gpus_per_node: [1, 2, 4, 8]      #   (tasks_per_node: [...] on a CPU site)
      nodes: [2, 4, 8, 16]
    points: [{nodes: 1, tasks_per_node: 2}]   # or/and explicit points
    bench: {warmup: 5, steps: 20, windows: 3, data: synthetic}
    slurm: {time: "00:15:00"}          # slurm.* keys every point shares (not nodes/gpus/tasks)
    profile: mysite                    # default: the config's slurm.profile
    dir: runs/scale-resnet_small       # the study directory (default: <train.runs_dir>/scale-<name>)
    reference: {tolerance: 0.1, images_per_second: {"1x1": 900, "2x8": 12000}}
    model: {algorithm: ring, gpus: [64, 512, 4096], links: {inter: {alpha_s: 2.0e-5, beta_bytes_per_s: 1.0e10}}}
                                       # algorithm: ring | recursive_doubling | rabenseifner | binomial | auto

Points are named ``NODESxPER_NODE`` ("2x8": 2 nodes of 8 GPUs or tasks). Everything is checked when
the file loads: unknown keys name themselves (strict loader), a strong-scaling batch that does
not divide among a point's ranks names the point, references must name points. Pure: runs nothing.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import List, Optional

from ..config import JobConfig, load_job, strict, to_dict
from ..config.schema import SlurmConfig
from ..config.strict import doc
from ..errors import ConfigError
from ..files import safe_name
from ..slurm.jobs.submission import job_config
from ..slurm.jobs.sweep import override_text
from .model import BACKWARD_FRACTION, algorithm_name, link_from_allreduce_json, links_from_dict

MODES = ("strong", "weak")
BENCH_DATA = ("synthetic", "real")
PER_POINT_SLURM = ("nodes", "gpus_per_node", "tasks_per_node")


@dataclass
class PointSpec:
    nodes: int = doc(1, "nodes of this point")
    gpus_per_node: int = doc(0, "GPUs per node (one rank each); 0 = a CPU point")
    tasks_per_node: Optional[int] = doc(None, "ranks per node on CPU (default 1); with GPUs it equals gpus_per_node")


@dataclass
class SizesSpec:
    gpus_per_node: list = doc([], "one node with each of these GPU counts, e.g. [1, 2, 4, 8]")
    tasks_per_node: list = doc([], "CPU sites: one node with each of these task counts")
    nodes: list = doc([], "then this many full nodes (the largest per-node count above, else 1 task), e.g. [2, 4]")


@dataclass
class BenchSpec:
    data: str = doc("synthetic", "synthetic (tensors made on the device) | real (the config's input pipeline)")
    warmup: int = doc(5, "untimed steps first")
    steps: int = doc(20, "timed steps per window")
    windows: int = doc(3, "timed windows (images/s is their median, with min and max)")


@dataclass
class ReferenceSpec:
    tolerance: float = doc(0.1, "a point fails `hpcnn scale check` below reference x (1 - tolerance)")
    images_per_second: dict = doc({}, "{point: images/s expected}, e.g. {\"1x1\": 900}")
    efficiency: dict = doc({}, "{point: parallel efficiency expected}, e.g. {\"2x8\": 0.85}")


@dataclass
class ModelSpec:
    links: dict = doc({}, "{inter: {alpha_s, beta_bytes_per_s}, intra: {...}}; empty = from `allreduce` files, "
                          "else the profile's links")
    allreduce: list = doc([], "`hpcnn bench allreduce` JSON files (relative to the study file): one node -> intra, "
                              "several -> inter")
    algorithm: str = doc("ring", "ring | recursive_doubling | rabenseifner | binomial | auto (the fastest per "
                                 "bucket): the allreduce the model assumes between nodes; tree = binomial (old name)")
    overlap: bool = doc(True, "buckets overlap the backward pass (all but the last one)")
    backward_fraction: float = doc(BACKWARD_FRACTION, "share of forward+backward that is backward")
    gpus: list = doc([], "more rank counts to predict beyond the measured ones, e.g. [64, 512, 4096]")
    ranks_per_node: Optional[int] = doc(None, "ranks per node for those predictions; default the largest measured")


@dataclass
class StudySpec:
    mode: str = doc(None, "strong | weak (required)")
    name: str = doc("study", "study name (default: the file name)")
    config: Optional[str] = doc(None, "job config (relative to the study file); null = the built-in default")
    overrides: list = doc([], "key.sub=value overrides for every point")
    batch_size: Optional[int] = doc(None, "strong: the global batch; weak: the per-rank batch; "
                                          "null = the config's train.batch_size")
    points: List[PointSpec] = doc([], "explicit points: {nodes, gpus_per_node | tasks_per_node}")
    sizes: SizesSpec = doc(None, "shorthand for points")
    bench: BenchSpec = doc(None, "how each point is measured (`hpcnn bench` parameters)")
    slurm: dict = doc({}, "slurm.* keys shared by every point (time, partition, cpus_per_task, ...)")
    profile: Optional[str] = doc(None, "site profile; default the config's slurm.profile")
    max_parallel: Optional[int] = doc(None, "most points running at once (1: one after another, so points sharing "
                                            "nodes do not disturb each other); null = no limit")
    dir: Optional[str] = doc(None, "study directory (relative paths: to the working directory); "
                                   "default <train.runs_dir>/scale-<name>")
    reference: ReferenceSpec = doc(None, "expected figures for `hpcnn scale check`")
    model: ModelSpec = doc(None, "the communication model the report compares with")
    source: Optional[str] = doc(None, "file the study was read from (set by the loader)")


@dataclass(frozen=True)
class Point:
    """One size of the study: ``nodes`` x ``per_node`` ranks, with its batch."""

    key: str                 # "NODESxPER_NODE"
    nodes: int
    per_node: int
    gpus: bool
    batch_per_rank: int
    global_batch: int

    @property
    def ranks(self) -> int:
        return self.nodes * self.per_node

    @property
    def label(self) -> str:
        unit = "GPU" if self.gpus else "task"
        return (f"{self.nodes} node{'s' if self.nodes != 1 else ''} x {self.per_node} "
                f"{unit}{'s' if self.per_node != 1 else ''}")

    @property
    def slurm(self) -> dict:
        return {"nodes": self.nodes, "gpus_per_node": self.per_node if self.gpus else 0,
                "tasks_per_node": self.per_node}


def point_key(nodes: int, per_node: int) -> str:
    return f"{nodes}x{per_node}"


def load_study(path: str | os.PathLike) -> StudySpec:
    """Read and validate a study file (every error names the file and key)."""
    return validate(strict.load_named(StudySpec, path, ConfigError, "study"))


def study_from_dict(data: dict, where: str = "<dict>") -> StudySpec:
    return validate(strict.build(StudySpec, data, where, ConfigError))


def to_data(spec: StudySpec) -> dict:
    return dataclasses.asdict(spec)


def _where(spec: StudySpec) -> str:
    return spec.source or "study"


def _relative(spec: StudySpec, path: str) -> Path:
    p = Path(os.path.expanduser(path))
    if p.is_absolute() or not spec.source:
        return p
    return Path(spec.source).parent / p


def config_path(spec: StudySpec) -> Path | None:
    return _relative(spec, spec.config).absolute() if spec.config else None


def _whole(value, key: str, where: str, least: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < least:
        raise ConfigError(f"'{key}' must be a whole number >= {least}, got {value!r}", where)
    return value


def _point_sizes(spec: StudySpec) -> list[tuple[str, int, int, bool]]:
    """(where in the file, nodes, per node, gpus) for every point, explicit ones first."""
    where = _where(spec)
    out = []
    for i, p in enumerate(spec.points):
        key = f"points[{i}]"
        nodes = _whole(p.nodes, f"{key}.nodes", where, 1)
        gpus = _whole(p.gpus_per_node, f"{key}.gpus_per_node", where, 0)
        if gpus:
            if p.tasks_per_node not in (None, gpus):
                raise ConfigError(f"'{key}.tasks_per_node' is {p.tasks_per_node} but gpus_per_node is {gpus}: "
                                  "hpcnn runs one rank per GPU", where, "leave tasks_per_node out of GPU points")
            out.append((key, nodes, gpus, True))
        else:
            tasks = 1 if p.tasks_per_node is None else _whole(p.tasks_per_node, f"{key}.tasks_per_node", where, 1)
            out.append((key, nodes, tasks, False))
    s = spec.sizes
    if s.gpus_per_node and s.tasks_per_node:
        raise ConfigError("'sizes' has both gpus_per_node and tasks_per_node", where,
                          "a study measures GPUs or CPU tasks, not both")
    gpus = bool(s.gpus_per_node)
    per_node = s.gpus_per_node or s.tasks_per_node
    for i, n in enumerate(per_node):
        key = f"sizes.{'gpus' if gpus else 'tasks'}_per_node[{i}]"
        out.append((key, 1, _whole(n, key, where, 1), gpus))
    full = max(per_node) if per_node else 1
    for i, n in enumerate(s.nodes):
        out.append((f"sizes.nodes[{i}]", _whole(n, f"sizes.nodes[{i}]", where, 1), full, gpus))
    return out


def validate(spec: StudySpec) -> StudySpec:
    where = _where(spec)
    if spec.mode is None:
        raise ConfigError("missing required key 'mode'", where,
                          "mode: strong (fixed global batch split over the ranks) or weak (fixed batch per rank)")
    if spec.mode not in MODES:
        raise ConfigError(f"'mode' must be one of {', '.join(MODES)}, got {spec.mode!r}", where,
                          "strong: fixed global batch split over the ranks; weak: fixed batch per rank")
    if spec.batch_size is not None:
        _whole(spec.batch_size, "batch_size", where, 1)
    sizes = _point_sizes(spec)
    if not sizes:
        raise ConfigError("a study needs points: 'sizes' or 'points'", where,
                          "e.g. sizes: {gpus_per_node: [1, 2, 4], nodes: [2, 4]}")
    seen: dict[str, str] = {}
    for key, nodes, per_node, _gpus in sizes:
        name = point_key(nodes, per_node)
        if name in seen:
            raise ConfigError(f"'{key}' repeats point {name} (also {seen[name]})", where)
        seen[name] = key
    if len({gpus for *_, gpus in sizes}) > 1:
        raise ConfigError("a study mixes GPU points and CPU points", where, "measure one kind per study")
    b = spec.bench
    if b.data not in BENCH_DATA:
        raise ConfigError(f"'bench.data' must be one of {', '.join(BENCH_DATA)}, got {b.data!r}", where)
    for key, least in (("warmup", 0), ("steps", 1), ("windows", 1)):
        _whole(getattr(b, key), f"bench.{key}", where, least)
    for key in spec.slurm:
        if key in PER_POINT_SLURM:
            raise ConfigError(f"'slurm.{key}' is set by each point", where, "give sizes in 'sizes' or 'points'")
        if key not in strict.field_types(SlurmConfig):
            raise ConfigError(f"unknown key 'slurm.{key}'", where,
                              strict.suggest(key, strict.field_types(SlurmConfig), "slurm.") or None)
    if spec.max_parallel is not None:
        _whole(spec.max_parallel, "max_parallel", where, 1)
    _validate_reference(spec, set(seen))
    _validate_model(spec)
    if spec.config and not config_path(spec).is_file():
        raise ConfigError(f"'config' file not found: {config_path(spec)}", where,
                          "paths are relative to the study file")
    return spec


def _validate_reference(spec: StudySpec, keys: set[str]) -> None:
    where, ref = _where(spec), spec.reference
    if not (isinstance(ref.tolerance, (int, float)) and 0 <= ref.tolerance < 1):
        raise ConfigError(f"'reference.tolerance' must be in [0, 1), got {ref.tolerance!r}", where)
    for section in ("images_per_second", "efficiency"):
        for key, value in getattr(ref, section).items():
            if str(key) not in keys:
                raise ConfigError(f"'reference.{section}.{key}' names no point of the study", where,
                                  strict.suggest(str(key), sorted(keys)) or f"points: {', '.join(sorted(keys))}")
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
                raise ConfigError(f"'reference.{section}.{key}' must be a number > 0, got {value!r}", where)


def _validate_model(spec: StudySpec) -> None:
    where, m = _where(spec), spec.model
    m.algorithm = algorithm_name(m.algorithm, where, "'model.algorithm'")  # tree, the old name, reads as binomial
    if not 0 <= m.backward_fraction <= 1:
        raise ConfigError(f"'model.backward_fraction' must be in [0, 1], got {m.backward_fraction!r}", where)
    for i, n in enumerate(m.gpus):
        _whole(n, f"model.gpus[{i}]", where, 1)
    if m.ranks_per_node is not None:
        _whole(m.ranks_per_node, "model.ranks_per_node", where, 1)
    if m.links:
        links_from_dict(m.links, f"{where}: model.links")
    for i, path in enumerate(m.allreduce):
        read_allreduce(_relative(spec, str(path)), f"{where}: model.allreduce[{i}]")


def read_allreduce(path: Path, where: str):
    try:
        data = json.loads(Path(path).read_text())
    except OSError as err:
        raise ConfigError(f"cannot read `hpcnn bench allreduce` result {path}: {err.strerror}", where) from None
    except ValueError as err:
        raise ConfigError(f"{path} is not JSON: {err}", where) from None
    return link_from_allreduce_json(data, f"{where} ({path})")


def allreduce_files(spec: StudySpec) -> list[Path]:
    return [_relative(spec, str(p)).absolute() for p in spec.model.allreduce]


def base_config(spec: StudySpec) -> JobConfig:
    path = config_path(spec)
    return load_job(str(path) if path else None, spec.overrides)


def points(spec: StudySpec, base: JobConfig | None = None) -> list[Point]:
    """Every point with its batch; in strong mode a global batch that does not divide fails here."""
    base = base or base_config(spec)
    batch = spec.batch_size or base.train.batch_size
    out = []
    for key, nodes, per_node, gpus in _point_sizes(spec):
        ranks = nodes * per_node
        if spec.mode == "strong" and batch % ranks:
            raise ConfigError(f"mode strong: the global batch {batch} does not divide among the {ranks} ranks of "
                              f"point {point_key(nodes, per_node)} ('{key}')", _where(spec),
                              "choose a batch_size every point's rank count divides")
        per_rank, total = (batch // ranks, batch) if spec.mode == "strong" else (batch, batch * ranks)
        out.append(Point(point_key(nodes, per_node), nodes, per_node, gpus, per_rank, total))
    return out


def point_config(spec: StudySpec, point: Point, base: JobConfig, runs_dir: Path) -> JobConfig:
    """The job one point runs: the base config, its batch, the study's slurm keys and the point's size.

    Named ``STUDY-POINT``, so `hpcnn status` on a submission labels each task by its point.
    """
    scope = ("train.batch_scope=global", f"train.batch_size={point.global_batch}") if spec.mode == "strong" else \
        ("train.batch_scope=per_rank", f"train.batch_size={point.batch_per_rank}")
    overrides = [*scope, override_text("train.runs_dir", str(runs_dir)),
                 override_text("name", f"{spec.name}-{point.key}")]
    return job_config(base, overrides, {**spec.slurm, **point.slurm}, where=f"{_where(spec)}: point {point.key}")


def fingerprint(config: JobConfig, spec: StudySpec) -> str:
    """Changes when what a point measures changes (config, bench parameters), not when its directory does."""
    data = to_dict(config)
    data["train"] = {k: v for k, v in data["train"].items() if k != "runs_dir"}
    text = json.dumps({"config": data, "bench": dataclasses.asdict(spec.bench)}, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def study_dir(spec: StudySpec, base: JobConfig | None = None) -> Path:
    if spec.dir:
        return Path(os.path.expanduser(spec.dir)).absolute()
    base = base or base_config(spec)
    return Path(base.train.runs_dir).expanduser().absolute() / f"scale-{safe_name(spec.name)}"


__all__ = ["BenchSpec", "ModelSpec", "Point", "PointSpec", "ReferenceSpec", "SizesSpec", "StudySpec",
           "allreduce_files", "base_config", "config_path", "fingerprint", "load_study", "point_config", "point_key",
           "points", "read_allreduce", "study_dir", "study_from_dict", "to_data", "validate"]
