"""What a request can cost at most: walltime x resources x tasks, in the units sites charge.

GPU jobs are charged in GPU-hours, CPU jobs in CPU-hours (cores x hours); node-hours are shown
for both, since exclusive-node sites charge those. The figure is an upper bound: the walltime is
what Slurm may hold the allocation for, not what the job will use. One place computes it for
``submit`` and the arrays of sweeps, groups, scaling studies and predictions (``total``).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable

from .resources import Resources


@dataclass(frozen=True)
class Cost:
    gpu_hours: float = 0.0
    cpu_hours: float = 0.0
    node_hours: float = 0.0
    tasks: int = 0

    def __add__(self, other: "Cost") -> "Cost":
        return Cost(self.gpu_hours + other.gpu_hours, self.cpu_hours + other.cpu_hours,
                    self.node_hours + other.node_hours, self.tasks + other.tasks)

    def describe(self) -> str:
        """``at most 8 GPU-hours, 4 node-hours for 2 tasks``: GPU-hours when any GPU is asked for, else CPU-hours."""
        main = f"{_hours(self.gpu_hours)} GPU-hours" if self.gpu_hours else f"{_hours(self.cpu_hours)} CPU-hours"
        tasks = f" for {self.tasks} tasks" if self.tasks != 1 else ""
        return f"at most {main}, {_hours(self.node_hours)} node-hours{tasks}"


def _hours(value: float) -> str:
    return f"{value:.3g}" if value < 100 else f"{value:,.0f}"


def cost_of(res: Resources, tasks: int = 1) -> Cost:
    """The most ``tasks`` jobs (array tasks) of request ``res`` can consume: each may run its full walltime."""
    hours = res.time_min / 60 * tasks
    return Cost(gpu_hours=hours * res.nodes * res.gpus_per_node,
                cpu_hours=hours * res.nodes * res.tasks_per_node * res.cpus_per_task,
                node_hours=hours * res.nodes, tasks=tasks)


def total(requests: Iterable[Resources]) -> Cost:
    """The sum over many tasks, one request each (a sweep's tasks, a group's points)."""
    return sum((cost_of(res) for res in requests), Cost())


__all__ = ["Cost", "cost_of", "total"]
