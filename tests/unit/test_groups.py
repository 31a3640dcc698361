"""Mixed-resource groups without a cluster: grouping by request, array splitting, records, ranking by any key."""
from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import pytest

from hpcnn.cli import main as hpcnn_main
from hpcnn.errors import ConfigError, ResourceError
from hpcnn.slurm import JobArray, plan_group, submit_group
from hpcnn.slurm.jobs import executor
from hpcnn.slurm.jobs.results import format_table, rank_rows
from hpcnn.slurm.jobs.status import TaskStatus
from hpcnn.slurm.site import commands
from hpcnn.slurm.site.commands import JobState

PYTHON = "/usr/bin/python3"


def job(tmp_path, *more):
    return {"name": "scale", "train": {"runs_dir": str(tmp_path / "runs"), "epochs": 1}, **dict(more)}


def array_line(script: str, option: str) -> str | None:
    return next((ln for ln in script.splitlines() if ln.startswith(f"#SBATCH --{option}=")), None)


def test_tasks_with_equal_requests_share_an_array(tmp_path):
    base = job(tmp_path)
    plan = plan_group([(base, {"nodes": 1}), (base, {"nodes": 2}), (base, {"nodes": 1})], profile="local",
                      python=PYTHON)
    assert [a.tasks for a in plan.arrays] == [[0, 2], [1]], "the fewest arrays: one per distinct request"
    assert [a.resources.nodes for a in plan.arrays] == [1, 2] and plan.resources is None
    assert [array_line(s, "nodes") for s in plan.scripts] == ["#SBATCH --nodes=1", "#SBATCH --nodes=2"]
    assert [array_line(s, "array") for s in plan.scripts] == ["#SBATCH --array=0-1", "#SBATCH --array=0-0"]
    assert {t.resources.job_name for t in plan.tasks} == {"hpcnn-scale"}
    assert [t.label for t in plan.tasks] == ["slurm.nodes=1", "slurm.nodes=2", "slurm.nodes=1"]
    assert plan.kind == "group" and plan.unit_dir.name.startswith("group-scale-")
    assert not plan.unit_dir.exists(), "planning creates no directory"


def test_configs_with_their_own_slurm_sections_group_the_same_way(tmp_path):
    tasks = [{**job(tmp_path), "name": f"t{i}", "slurm": {"nodes": n, "time": t}}
             for i, (n, t) in enumerate([(1, "00:10:00"), (1, "00:20:00"), (1, "00:10:00"), (2, "00:10:00")])]
    plan = plan_group(tasks, profile="local", name="mixed", python=PYTHON)
    assert [a.tasks for a in plan.arrays] == [[0, 2], [1], [3]]
    assert [(r.nodes, r.walltime) for r in plan.requests] == [(1, "00:10:00"), (1, "00:20:00"), (2, "00:10:00")]
    assert [t.label for t in plan.tasks] == ["t0", "t1", "t2", "t3"]


def test_a_group_is_split_at_max_array_size_like_a_sweep(tmp_path):
    base = job(tmp_path)
    tasks = [(base, {"nodes": 1})] * 5 + [(base, {"nodes": 2})] * 3
    plan = plan_group(tasks, profile="local", max_array_size=2, max_parallel=2, python=PYTHON)
    assert [a.tasks for a in plan.arrays] == [[0, 1], [2, 3], [4], [5, 6], [7]]
    assert plan.chunks == [(0, 2), (2, 2), (4, 1), (0, 2), (2, 1)], "offsets count within each request"
    assert [array_line(s, "array") for s in plan.scripts] == ["#SBATCH --array=0-1%2", "#SBATCH --array=0-1%2",
                                                             "#SBATCH --array=0-0%1", "#SBATCH --array=0-1%2",
                                                             "#SBATCH --array=0-0%1"]
    # max_parallel holds for the whole group: every array waits for the one before
    assert array_line(plan.scripts[0], "dependency") is None
    assert all(array_line(s, "dependency") for s in plan.scripts[1:])


def test_an_impossible_request_is_refused_naming_its_task(tmp_path):
    base = job(tmp_path)
    with pytest.raises(ResourceError) as err:
        plan_group([(base, {"nodes": 1}), (base, {"nodes": 4}), (base, {"nodes": 2})], profile="local")
    text = str(err.value)
    assert text.startswith("task 1 (slurm.nodes=4): ") and "exceeds max_nodes=3" in text
    with pytest.raises(ResourceError, match=r"^task 2 \(t2\): .*exceeds the 2 GPUs"):
        plan_group([{**base, "name": f"t{i}", "slurm": {"gpus_per_node": g}} for i, g in enumerate([0, 2, 3])],
                   profile="local")
    with pytest.raises(ConfigError, match=r"^task 1: .*optim.lr"):
        plan_group([base, {**base, "optim": {"lr": -1.0}}], profile="local")
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())


@pytest.mark.parametrize("tasks, kwargs, message", [
    ([], {}, "at least one task"),
    ([("a", "b", "c")], {}, "a (job, resources dict) pair"),
    ([None, {"slurm": {"profile": "generic"}}], {}, "task 1 asks for profile 'generic'"),
    ([None], {"metric": ""}, "'metric' must be a dotted"),
    ([None], {"mode": "best"}, "'mode' must be max or min"),
])
def test_bad_groups_are_named(tasks, kwargs, message):
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        plan_group(tasks, **kwargs)


class FakeExecutor:
    """Stands in for submitit: numbers arrays 100, 101, ... and writes the script it was given."""

    next_id = 100

    def __init__(self, folder, profile, resources, python=None):
        self.folder, self.resources = Path(folder), resources

    def submit_as_array(self, payloads, max_parallel=None, dependency=None):
        array_id, FakeExecutor.next_id = FakeExecutor.next_id, FakeExecutor.next_id + 1
        self.folder.mkdir(parents=True, exist_ok=True)
        script = self.folder / f"{array_id}.sbatch"
        script.write_text(f"#SBATCH --nodes={self.resources.nodes}\n#dependency {dependency}\n")
        return [SimpleNamespace(job_id=f"{array_id}_{i}", paths=SimpleNamespace(submission_file=script))
                for i in range(len(payloads))]


@pytest.fixture
def fake_submitit(tmp_path, monkeypatch):
    monkeypatch.setenv("HPCNN_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.setattr(FakeExecutor, "next_id", 100)
    monkeypatch.setattr(executor, "make_executor", FakeExecutor)


def test_one_record_holds_every_array_and_task(tmp_path, fake_submitit):
    base = job(tmp_path)
    group = submit_group([(base, {"nodes": 1}), (base, {"nodes": 2}), (base, {"nodes": 1})], profile="local",
                         metric="images_per_second")
    record = json.loads((group.sweep_dir / "sweep.json").read_text())
    assert record["kind"] == "group" and record["metric"] == "images_per_second"
    assert [(a["tasks"], a["resources"]["nodes"]) for a in record["arrays"]] == [([0, 2], 1), ([1], 2)]
    assert [(t["job_id"], t["resources"]["nodes"], t["array"]) for t in record["tasks"]] == \
        [("100_0", 1, 0), ("101_0", 2, 1), ("100_1", 1, 0)]
    task = json.loads((group.sweep_dir / "task-001" / "job.json").read_text())
    assert task["job_id"] == "101_0" and task["resources"]["nodes"] == 2 and task["sweep_dir"] == str(group.sweep_dir)
    assert (group.sweep_dir / "submission-1.sbatch").read_text().startswith("#SBATCH --nodes=2")
    again = JobArray.from_dir(group.sweep_dir)  # a new shell
    assert again.kind == "group" and again.array_ids == ["100", "101"]
    assert [t.job_id for t in again] == ["100_0", "101_0", "100_1"]
    assert again[1].record["resources"]["nodes"] == 2


def write_summary(run_dir: Path, **values):
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "summary.json").write_text(json.dumps({"status": "completed", **values}))


def test_results_rank_any_numeric_key_from_a_new_shell(tmp_path, monkeypatch, capsys, fake_submitit):
    base = job(tmp_path)
    group = submit_group([(base, {"nodes": n}) for n in (1, 2, 1)], profile="local")
    speeds, walls = [120.0, 310.5, 150.0], [30.0, 12.5, 25.0]
    for task, ips, wall in zip(group, speeds, walls):
        write_summary(task.run_dir, images_per_second=ips, wall_seconds=wall, metrics={"val": {"accuracy": 0.9}},
                      gpu={"energy_j": ips * 10})
    nodes = {"100_0": "n1", "101_0": "n[2-3]", "100_1": "n2"}
    monkeypatch.setattr(commands, "query_states", lambda ids: {
        jid: JobState(jid, "COMPLETED", "0:0", nodes=n) for jid, n in nodes.items()})

    assert hpcnn_main(["results", str(group.sweep_dir), "--metric", "images_per_second", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [r["job_id"] for r in rows] == ["101_0", "100_1", "100_0"] and [r["rank"] for r in rows] == [1, 2, 3]
    assert rows[0]["nodes"] == ["n2", "n3"] and rows[0]["images_per_second"] == 310.5

    assert hpcnn_main(["results", str(group.sweep_dir), "--metric", "wall_seconds", "--mode", "min", "--json"]) == 0
    assert [r["value"] for r in json.loads(capsys.readouterr().out)] == [12.5, 25.0, 30.0]
    assert hpcnn_main(["results", str(group.sweep_dir), "--metric", "gpu.energy_j", "--mode", "min"]) == 0
    table = capsys.readouterr().out.splitlines()
    assert table[0].split()[:5] == ["rank", "task", "job", "state", "gpu.energy_j"] and "nodes" in table[0]
    assert table[1].split()[:3] == ["1", "0", "100_0"] and "n1" in table[1] and "120.0" in table[1]

    assert hpcnn_main(["status", str(group.sweep_dir), "--metric", "images_per_second"]) == 0
    shown = capsys.readouterr().out
    assert shown.startswith("group scale (array job(s) 100, 101): 3 COMPLETED")
    assert all(jid in shown for jid in nodes) and "n[2-3]" in shown


def status(index, state, summary=None, nodelist=""):
    return TaskStatus(f"7_{index}", state, Path(f"/r/task-{index}"), summary=summary, index=index,
                      overrides=[f"slurm.nodes={index + 1}"], nodelist=nodelist)


def test_rank_rows_by_nested_keys_and_min():
    done = {"status": "completed"}
    rows = rank_rows([status(0, "COMPLETED", {**done, "gpu": {"energy_j": 50.0}}),
                      status(1, "COMPLETED", {**done, "gpu": {"energy_j": 20.0}}),
                      status(2, "COMPLETED", done), status(3, "RUNNING")], "gpu.energy_j", "min")
    assert [(r["index"], r["rank"]) for r in rows] == [(1, 1), (0, 2), (3, None), (2, None)]
    assert rows[-1]["reason"] == "COMPLETED: no gpu.energy_j in summary.json"


def test_table_shows_throughput_and_nodes():
    summary = {"status": "completed", "images_per_second": 812.25, "metrics": {"val": {"accuracy": 0.93}}}
    table = format_table(rank_rows([status(0, "COMPLETED", summary, "n[1-2]")]), "val.accuracy")
    header, line = table.splitlines()
    assert header.split() == ["rank", "task", "job", "state", "val.accuracy", "test.accuracy", "images_per_second",
                              "wall_s", "nodes", "label"]
    assert line.split() == ["1", "0", "7_0", "COMPLETED", "0.9300", "-", "812.2", "-", "n[1-2]", "slurm.nodes=1"]
    only = format_table(rank_rows([status(0, "COMPLETED", summary)], "images_per_second"), "images_per_second")
    assert only.splitlines()[0].split().count("images_per_second") == 1
