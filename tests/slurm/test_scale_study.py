"""A scaling study on the real local Slurm: one command submits it, a killed point is resubmitted, a
second run submits nothing new and collects JSON, CSV, table and plots; `scale check` judges it."""
from __future__ import annotations

import json

from hpcnn.scale import Study
from hpcnn.scale.state import point_states, read_state

from tests.helpers import TINY
from tests.slurm.support import JOB_TIMEOUT_S, SESSION_START, hpcnn, state_dir, wait_until

__all__ = ["state_dir"]


def write_study(tmp_path, name: str) -> tuple:
    overrides = [o for o in TINY if not o.startswith("train.batch_size")] + ["monitor.enabled=false"]
    study = {"name": name, "mode": "strong", "batch_size": 32, "overrides": overrides, "profile": "local",
             "dir": str(tmp_path / "study"), "points": [{"nodes": 1, "tasks_per_node": 1},
                                                          {"nodes": 1, "tasks_per_node": 2},
                                                          {"nodes": 2, "tasks_per_node": 1}],
             "bench": {"warmup": 2, "steps": 5, "windows": 2}, "slurm": {"time": "00:10:00"},
             "reference": {"tolerance": 0.1, "images_per_second": {"1x1": 1e9, "1x2": 1.0}}}
    path = tmp_path / "study.yaml"
    path.write_text(json.dumps(study))  # JSON is YAML
    return path, tmp_path / "study"


def states(study_dir):
    return point_states(read_state(study_dir))


def settled(study_dir):
    now = states(study_dir)
    return now if not any(s.active for s in now.values()) else None


def arrays_named(cluster, job_name: str) -> set[str]:
    out = cluster.run(["sacct", "-X", "-n", "-P", "-S", SESSION_START, "--name", job_name, "-o", "JobID"],
                      timeout=30).stdout
    return {line.split("_")[0] for line in out.split()}


def test_study_end_to_end_resubmits_a_killed_point_then_collects_and_checks(slurm_cluster, tmp_path, state_dir):
    name = f"e2e{tmp_path.name[-6:].replace('_', '')}"
    path, study_dir = write_study(tmp_path, name)

    first = json.loads(hpcnn("scale", path, "--json").stdout)
    assert first["submitted"] == ["1x1", "1x2", "2x1"] and len(first["array_ids"]) == 3, first
    assert first["study_dir"] == str(study_dir)

    # kill the 2-node point while it runs (it has not written its result yet)
    running = wait_until(lambda: states(study_dir)["2x1"].status == "running" and states(study_dir)["2x1"],
                         JOB_TIMEOUT_S, "point 2x1 to start", poll_s=0.2)
    assert running.bench is None
    slurm_cluster.run(["scancel", running.attempt["job_id"]], timeout=30)
    after = wait_until(lambda: settled(study_dir), 2 * JOB_TIMEOUT_S, "every point to finish", poll_s=1.0)
    assert after["2x1"].status == "failed" and "CANCELLED" in after["2x1"].reason, after["2x1"]
    assert after["1x1"].status == after["1x2"].status == "done", {k: s.reason for k, s in after.items()}

    second = json.loads(hpcnn("scale", path, "--json").stdout)
    assert second["submitted"] == ["2x1"] and len(second["array_ids"]) == 1 and second["report"] is None
    wait_until(lambda: settled(study_dir), JOB_TIMEOUT_S, "the resubmitted point", poll_s=1.0)

    third = json.loads(hpcnn("scale", path, "--json").stdout)
    assert third["submitted"] == [] and third["array_ids"] == []
    assert arrays_named(slurm_cluster, f"hpcnn-scale-{name}") == set(first["array_ids"] + second["array_ids"])

    report = third["report"]
    assert report == json.loads((study_dir / "points.json").read_text()) | {"collected_at": report["collected_at"]}
    points = {p["key"]: p for p in report["points"]}
    assert [p["status"] for p in points.values()] == ["done"] * 3
    assert {k: len(p["nodes_ran"]) for k, p in points.items()} == {"1x1": 1, "1x2": 1, "2x1": 2}
    assert {k: p["world_size"] for k, p in points.items()} == {"1x1": 1, "1x2": 2, "2x1": 2}
    assert all(p["flags"] == [] for p in points.values())  # real placements, checked against hosts_per_rank
    assert points["2x1"]["job_ids"] == [running.attempt["job_id"], points["2x1"]["job_id"]]
    assert [p["batch_per_rank"] for p in points.values()] == [32, 16, 16]
    assert report["baseline"] == "1x1" and points["1x1"]["efficiency"] == 1.0
    two = points["1x2"]
    assert two["efficiency"] == two["images_per_second"] / (2 * points["1x1"]["images_per_second"])
    assert all(p["predicted"] and p["predicted"]["ranks"] == p["ranks"] for p in points.values())  # local links
    assert report["model"]["links_source"] == "profile local (links)"
    assert all((study_dir / f).stat().st_size > 0 for f in ("points.csv", "table.txt", "scaling_throughput.png",
                                                             "scaling_efficiency.png", "scaling_model.png"))
    table = (study_dir / "table.txt").read_text()
    assert "strong scaling" in table and "efficiency = throughput(N) / (N x throughput(1))" in table

    check = hpcnn("scale", "check", study_dir, check=False)
    assert check.returncode == 1, check.stdout + check.stderr
    lines = check.stdout.splitlines()
    assert lines[0].startswith("FAIL 1x1") and lines[1].startswith("ok   1x2") and "1 of 2" in lines[-1]
    assert arrays_named(slurm_cluster, f"hpcnn-scale-{name}") == set(first["array_ids"] + second["array_ids"])
    assert [c["ok"] for c in Study(study_dir).check()] == [False, True]  # the Python API, from the directory
