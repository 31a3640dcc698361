"""What a request can cost at most (walltime x resources x tasks), checked against hand-computed figures."""
from __future__ import annotations

import pytest

from hpcnn.slurm.site.cost import Cost, cost_of, total
from hpcnn.slurm.site.resources import Resources

from tests.helpers import REPO


def request(nodes=1, gpus=0, tasks=1, cpus=1, minutes=60) -> Resources:
    return Resources(nodes=nodes, gpus_per_node=gpus, tasks_per_node=tasks, cpus_per_task=cpus, mem_gb=None,
                     time_min=minutes, job_name="j")


@pytest.mark.parametrize("res, array, gpu_h, cpu_h, node_h, text", [
    # 2 nodes x 4 GPUs x 3 h = 24 GPU-hours; 2 x 4 tasks x 8 CPUs x 3 h = 192 CPU-hours; 2 x 3 h = 6 node-hours
    (request(nodes=2, gpus=4, tasks=4, cpus=8, minutes=180), 1, 24, 192, 6, "at most 24 GPU-hours, 6 node-hours"),
    # CPU only: 1 node x 2 tasks x 4 CPUs x 0.5 h = 4 CPU-hours
    (request(tasks=2, cpus=4, minutes=30), 1, 0, 4, 0.5, "at most 4 CPU-hours, 0.5 node-hours"),
    # an array of 10 tasks, each 1 GPU for 15 min: 10 x 0.25 h = 2.5 GPU-hours
    (request(gpus=1, minutes=15), 10, 2.5, 2.5, 2.5, "at most 2.5 GPU-hours, 2.5 node-hours for 10 tasks"),
    # 1,000 tasks x 4 GPUs x 2 days = 192,000 GPU-hours
    (request(gpus=4, tasks=4, minutes=2880), 1000, 192000, 192000, 48000,
     "at most 192,000 GPU-hours, 48,000 node-hours for 1000 tasks"),
])
def test_cost_is_walltime_times_resources_times_tasks(res, array, gpu_h, cpu_h, node_h, text):
    cost = cost_of(res, array)
    assert (cost.gpu_hours, cost.cpu_hours, cost.node_hours, cost.tasks) == pytest.approx((gpu_h, cpu_h, node_h, array))
    assert cost.describe() == text


def test_the_total_of_a_group_adds_each_tasks_own_request():
    # a scaling study: 1, 2 and 4 nodes of 2 GPUs for 20 min -> (2 + 4 + 8) GPUs x 1/3 h = 14/3 GPU-hours
    points = [request(nodes=n, gpus=2, tasks=2, minutes=20) for n in (1, 2, 4)]
    cost = total(points)
    assert cost.gpu_hours == pytest.approx(14 / 3) and cost.node_hours == pytest.approx(7 / 3) and cost.tasks == 3
    assert total([]) == Cost() and cost.describe() == "at most 4.67 GPU-hours, 2.33 node-hours for 3 tasks"


def test_dry_runs_show_the_profile_its_origin_and_the_cost(tmp_path, capsys, monkeypatch):
    from hpcnn.cli import main

    monkeypatch.setenv("PATH", str(tmp_path))  # a dry run needs no Slurm
    runs = f"train.runs_dir={tmp_path / 'runs'}"
    assert main(["submit", "--dry-run", "--gpus-per-node", "2", "--nodes", "2", "--time", "03:00:00", runs]) == 0
    err = capsys.readouterr().err
    assert "# profile local (" in err and "local.yaml), chosen by $HPCNN_PROFILE" in err   # the suite's default
    assert "# cost: at most 12 GPU-hours, 6 node-hours (walltime x resources x tasks)" in err

    # jobs/sweep_lr.yaml: 6 tasks x 1 task x 1 CPU x 20 min = 2 CPU-hours
    assert main(["sweep", str(REPO / "jobs" / "sweep_lr.yaml"), "--profile", "generic", "--dry-run", runs]) == 0
    err = capsys.readouterr().err
    assert "# profile generic (" in err and "chosen by --profile" in err
    assert "# cost: at most 2 CPU-hours, 2 node-hours for 6 tasks" in err
