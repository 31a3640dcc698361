"""The resource request of one job, resolved from the job config and the site profile.

Precedence: an explicit value in the job config's ``slurm`` section (or a command-line
flag, which is just an override of that section) > the profile's default > a built-in
default. ``check_fits`` compares the result with the profile's limits so a request the
site would reject, or queue forever, fails on the login node instead.
"""
from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass, field, fields
from typing import Optional

from ...config import JobConfig
from ...config.walltime import format_walltime, walltime_minutes
from ...errors import ConfigError, ResourceError
from .profiles import Profile

# Options hpcnn writes itself; setting them through extra_sbatch would break logs, arrays or requeue.
MANAGED_OPTIONS = {"array", "output", "error", "signal", "open-mode", "job-name", "nodes", "ntasks-per-node",
                   "cpus-per-task", "time", "mem", "gres", "gpus-per-node", "partition", "account", "qos",
                   "constraint", "requeue", "wrap", "chdir", "parsable", "test-only"}


@dataclass(frozen=True)
class Resources:
    """Everything the #SBATCH header asks for; plain data (JSON-able for job.json)."""

    nodes: int
    gpus_per_node: int
    tasks_per_node: int
    cpus_per_task: int
    mem_gb: Optional[float]
    time_min: int
    job_name: str
    partition: Optional[str] = None
    account: Optional[str] = None
    qos: Optional[str] = None
    constraint: Optional[str] = None
    max_requeues: int = 3
    extra_sbatch: dict = field(default_factory=dict)

    @property
    def walltime(self) -> str:
        return format_walltime(self.time_min)

    @property
    def total_tasks(self) -> int:
        return self.nodes * self.tasks_per_node

    def to_dict(self) -> dict:
        return {**asdict(self), "walltime": self.walltime}

    @classmethod
    def from_dict(cls, data: dict) -> "Resources":
        """The inverse of to_dict (job.json and sweep.json records)."""
        return cls(**{f.name: data[f.name] for f in fields(cls) if f.name in data})

    def key(self) -> str:
        """Equal for equal requests: tasks with the same key can share one Slurm array."""
        return json.dumps(asdict(self), sort_keys=True, default=str)


def resolve(cfg: JobConfig, profile: Profile, unit: str | None = None) -> Resources:
    """Fill every request the job left open from the profile; a job that names none is named
    ``hpcnn-UNIT`` (the sweep or group its tasks share), else after its config."""
    s = cfg.slurm
    gpus = s.gpus_per_node
    tasks = s.tasks_per_node or (gpus if gpus > 0 else 1)
    if s.cpus_per_task:
        cpus = s.cpus_per_task
    elif gpus > 0 and profile.cpus_per_gpu:
        cpus = max(1, profile.cpus_per_gpu * gpus // tasks)
    else:
        cpus = profile.cpus_per_task
    if s.mem_gb:
        mem = s.mem_gb
    elif gpus > 0 and profile.mem_per_gpu_gb:
        mem = profile.mem_per_gpu_gb * gpus
    else:
        mem = profile.mem_gb
    return Resources(nodes=s.nodes, gpus_per_node=gpus, tasks_per_node=tasks, cpus_per_task=cpus, mem_gb=mem,
                     time_min=walltime_minutes(s.time),
                     job_name=s.job_name or f"hpcnn-{cfg.name if unit is None else unit}",
                     partition=s.partition or profile.partition, account=s.account or profile.account,
                     qos=s.qos or profile.qos, constraint=s.constraint or profile.constraint,
                     max_requeues=s.max_requeues, extra_sbatch=dict(s.extra_sbatch))


def check_fits(res: Resources, profile: Profile) -> None:
    """Raise ResourceError naming the first request the profile cannot satisfy."""
    where = f"profile {profile.name}" + (f" ({profile.source})" if profile.source else "")
    if res.gpus_per_node > profile.max_gpus_per_node:
        if profile.max_gpus_per_node == 0:
            raise ResourceError(f"slurm.gpus_per_node={res.gpus_per_node} but this profile has no GPUs", where,
                                "use a GPU profile (`hpcnn profiles list`) or slurm.gpus_per_node=0")
        raise ResourceError(f"slurm.gpus_per_node={res.gpus_per_node} exceeds the {profile.max_gpus_per_node} "
                            "GPUs a node has", where, f"use slurm.nodes to spread over nodes "
                                                      f"(at most {profile.max_gpus_per_node} per node)")
    if res.nodes > profile.max_nodes:
        raise ResourceError(f"slurm.nodes={res.nodes} exceeds max_nodes={profile.max_nodes}", where)
    if res.time_min > profile.max_time_min:
        raise ResourceError(f"walltime {res.walltime} exceeds the site limit {profile.max_time}", where,
                            "ask for less time; checkpoints + requeue carry long runs across jobs")
    if res.gpus_per_node and res.tasks_per_node != res.gpus_per_node and profile.launcher == "srun":
        raise ResourceError(f"slurm.tasks_per_node={res.tasks_per_node} but gpus_per_node={res.gpus_per_node}: "
                            "hpcnn runs one task per GPU", where, "leave slurm.tasks_per_node unset")
    if profile.cpus_per_node and res.tasks_per_node * res.cpus_per_task > profile.cpus_per_node:
        raise ResourceError(f"{res.tasks_per_node} tasks x {res.cpus_per_task} CPUs = "
                            f"{res.tasks_per_node * res.cpus_per_task} CPUs per node, but a node has "
                            f"{profile.cpus_per_node}", where, "lower slurm.cpus_per_task")
    if res.mem_gb is not None and profile.max_mem_gb and res.mem_gb > profile.max_mem_gb:
        raise ResourceError(f"memory {res.mem_gb:g} GB per node exceeds the {profile.max_mem_gb:g} GB a node has",
                            where, "lower slurm.mem_gb")
    if profile.partitions and res.partition and res.partition not in profile.partitions:
        raise ResourceError(f"unknown partition '{res.partition}'", where,
                            f"this site has: {', '.join(profile.partitions)}")
    if "\n" in res.job_name or "\r" in res.job_name:
        # An #SBATCH value ends at the newline: the rest of the name would become a new script line.
        raise ConfigError("slurm.job_name contains a newline; Slurm job names are one line", "slurm.job_name",
                          "remove the newline")
    for key, value in res.extra_sbatch.items():
        option = str(key).lstrip("-").replace("_", "-")
        if option in MANAGED_OPTIONS:
            raise ConfigError(f"slurm.extra_sbatch.{key} sets an option hpcnn manages", "slurm.extra_sbatch",
                              "use the matching slurm.* key instead (or the profile)")
        if not re.match(r"^[a-z][a-z0-9-]*$", option):
            raise ConfigError(f"slurm.extra_sbatch key {key!r} is not an sbatch long option name",
                              "slurm.extra_sbatch")
        if isinstance(value, str) and ("\n" in value or "\r" in value):
            raise ConfigError(f"slurm.extra_sbatch.{key} contains a newline", "slurm.extra_sbatch")


__all__ = ["MANAGED_OPTIONS", "Resources", "check_fits", "resolve"]
