"""A mixed-resource group on the real local Slurm: one planned unit, the fewest arrays, nodes and throughput."""
from __future__ import annotations

import json

import hpcnn
from hpcnn.config import load_job
from hpcnn.slurm import JobArray

from tests.slurm.support import (JOB_TIMEOUT_S, POLL_MAX_S, hpcnn as run_cli, hpcnn_json, sacct_rows, state_dir,
                                 tiny)

__all__ = ["state_dir"]


def test_group_on_1_2_1_nodes_is_two_arrays_and_reports_nodes_and_throughput(slurm_cluster, tmp_path, state_dir):
    job = load_job(None, tiny(tmp_path, "name=mixed", "train.epochs=1"))
    group = hpcnn.submit_group([(job, {"nodes": 1}), (job, {"nodes": 2}), (job, {"nodes": 1})], profile="local",
                               metric="images_per_second")
    record = json.loads((group.sweep_dir / "sweep.json").read_text())
    assert record["kind"] == "group" and len(group.array_ids) == 2, "one array per distinct request"
    assert [(a["tasks"], a["resources"]["nodes"]) for a in record["arrays"]] == [([0, 2], 1), ([1], 2)]
    assert [t["resources"]["nodes"] for t in record["tasks"]] == [1, 2, 1]

    again = JobArray.from_dir(group.sweep_dir)  # as a new shell would
    statuses = again.wait(timeout_s=3 * JOB_TIMEOUT_S, poll_max_s=POLL_MAX_S)
    assert all(s.succeeded for s in statuses), [s.reason for s in statuses]
    assert [len(s.nodes) for s in statuses] == [1, 2, 1], [s.nodelist for s in statuses]
    assert all(s.metric("images_per_second") > 0 for s in statuses)
    assert statuses[1].summary["world_size"] == 2
    job_blocks = [s.summary["job"] for s in statuses]  # the trainer records its Slurm job in summary.json
    assert [j["num_nodes"] for j in job_blocks] == [1, 2, 1]
    assert [j["job_id"] for j in job_blocks] == [t.job_id for t in group]
    for array in record["arrays"]:  # Slurm saw exactly these arrays and tasks
        assert len(sacct_rows(slurm_cluster, array["job_id"])) == array["count"]

    ranked = hpcnn_json("results", group.sweep_dir, "--metric", "images_per_second")  # a new process
    values = [r["value"] for r in ranked]
    assert [r["rank"] for r in ranked] == [1, 2, 3] and values == sorted(values, reverse=True)
    assert sorted(r["job_id"] for r in ranked) == sorted(t.job_id for t in group)
    assert {r["job_id"]: len(r["nodes"]) for r in ranked} == {t.job_id: n for t, n in zip(group, (1, 2, 1))}
    table = run_cli("results", group.sweep_dir, "--metric", "images_per_second").stdout.splitlines()
    assert table[0].split()[:5] == ["rank", "task", "job", "state", "images_per_second"]
    assert [line.split()[2] for line in table[1:]] == [r["job_id"] for r in ranked]

    shown = run_cli("status", group.sweep_dir).stdout
    assert f"group mixed (array job(s) {', '.join(group.array_ids)}): 3 COMPLETED" in shown
    assert all(t.job_id in shown for t in group) and statuses[1].nodelist in shown
