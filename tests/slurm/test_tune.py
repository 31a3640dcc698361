"""`hpcnn tune` on the real local Slurm: one array of workers pulls trials, prunes, survives preemption.

Three searches run side by side (one submission round, shared wall time): five tiny trials for two
workers with ASHA (trials paused at a rung, the best promoted); two trials of one worker on two nodes (a distributed trial: rank 0 asks,
every rank trains); and one longer trial whose worker gets `scancel --signal=USR2` mid-trial,
is requeued by Slurm and finishes that same trial from its checkpoint, with bitwise the weights of the
same trial trained by a plain job that was never interrupted.
"""
from __future__ import annotations

import json

import pytest
import torch

import hpcnn as hpcnn_api
from hpcnn.slurm.site import commands
from hpcnn.tune.study import read_study

from tests.slurm.support import JOB_TIMEOUT_S, POLL_MAX_S, hpcnn, hpcnn_json, sacct_rows, tiny, wait_until

FINISHED = {"COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "OUT_OF_MEMORY", "NODE_FAIL"}


def search_file(root, name: str, trials: int, workers: int, epochs: int, pruner: str, space: str,
                nodes: int = 1) -> str:
    overrides = ", ".join(json.dumps(o) for o in tiny(root, f"train.epochs={epochs}", "train.log_every=2"))
    path = root / f"{name}.yaml"
    path.write_text(f"name: {name}\noverrides: [{overrides}]\nspace:\n{space}budget: {{trials: {trials}}}\n"
                    f"sampler: {{name: random, seed: 0}}\npruner: {{name: {pruner}}}\n"
                    f"workers: {{count: {workers}, slurm: {{time: '00:10:00', nodes: {nodes}}}}}\n")
    return str(path)


def submitted(path) -> tuple:
    out = hpcnn("tune", path, "--profile", "local", "--json").stdout
    search_dir = json.loads(out)["search_dir"]
    from pathlib import Path

    array = json.loads((Path(search_dir) / "arrays.json").read_text())[0]["job_id"]
    return Path(search_dir), array


def array_done(cluster, array_id: str, tasks: int):
    rows = [r for r in sacct_rows(cluster, array_id) if "_" in r["JobID"]]
    return rows if len(rows) == tasks and all(r["State"] in FINISHED for r in rows) else None


@pytest.fixture(scope="module")
def searches(slurm_cluster, tmp_path_factory):
    root = tmp_path_factory.mktemp("tune")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("HPCNN_STATE_DIR", str(root / "state"))
        pulled = submitted(search_file(root, "pulled", 5, 2, 3, "asha",
                                       "  optim.lr: {type: float, low: 1.0e-4, high: 0.1, log: true}\n"
                                       "  train.batch_size: {type: categorical, choices: [32, 64]}\n"))
        preempted = submitted(search_file(root, "preempted", 1, 1, 24, "none",
                                          "  optim.lr: {type: float, low: 0.01, high: 0.02}\n"))
        distributed = submitted(search_file(root, "distributed", 2, 1, 2, "none",
                                            "  optim.lr: {type: float, low: 0.01, high: 0.02}\n", nodes=2))
        trial_dir = preempted[0] / "trials" / "trial-0000"
        wait_until(lambda: sorted((trial_dir / "checkpoints").glob("ckpt-*.pt")), JOB_TIMEOUT_S,
                   "the first checkpoint of the preempted search's trial", poll_s=0.2)
        commands.scancel([f"{preempted[1]}_0"], signal="USR2")
        # the same trial trained by a plain job, never interrupted: the weights to match
        reference = hpcnn_api.submit(str(trial_dir / "config.resolved.yaml"), "local",
                                     overrides=[f"train.runs_dir={root / 'reference'}"])
        for search_dir, array_id, tasks in ((*pulled, 2), (*preempted, 1), (*distributed, 1)):
            wait_until(lambda: array_done(slurm_cluster, array_id, tasks), 3 * JOB_TIMEOUT_S,
                       f"the workers of {search_dir.name}", poll_s=1.0)
        reference.wait(timeout_s=3 * JOB_TIMEOUT_S, poll_max_s=POLL_MAX_S)
        listed = hpcnn("status", "--limit", "10").stdout  # this module's submissions, the searches among them
        by_id = hpcnn_json("status", pulled[1])
        yield {"pulled": pulled, "preempted": preempted, "distributed": distributed, "cluster": slurm_cluster,
               "reference": reference.run_dir, "listed": listed, "by_id": by_id}


def test_workers_pull_trials_until_the_budget_is_spent_and_prune_bad_ones(searches):
    search_dir, array_id = searches["pulled"]
    assert [r["State"] for r in array_done(searches["cluster"], array_id, 2)] == ["COMPLETED", "COMPLETED"]
    trials = [t for t in read_study(search_dir).get_trials() if not t.user_attrs.get("over_budget")]
    firsts = [t for t in trials if "continues" not in t.user_attrs]           # continuations: promoted trials
    assert len(firsts) == 5 and {t.state.name for t in trials} <= {"COMPLETE", "PRUNED"}
    assert any(t.state.name == "PRUNED" for t in trials)
    assert len({t.user_attrs["run_dir"] for t in firsts}) == 5                 # never one trial twice
    assert {t.user_attrs["run_dir"] for t in trials} == {t.user_attrs["run_dir"] for t in firsts}
    assert {t.user_attrs["worker"] for t in trials} <= {f"{array_id}_0", f"{array_id}_1"}
    status = json.loads(hpcnn("tune", "status", search_dir, "--json").stdout)
    assert status["best"] and status["epochs_saved_by_pruning"] > 0
    assert (search_dir / "best.yaml").is_file()
    # `hpcnn status` lists searches with the other submissions, and finds one by its workers' array id
    assert f"search {search_dir}\n  trials: " in searches["listed"] and "Traceback" not in searches["listed"]
    assert searches["listed"].count("search ") == 3 and str(searches["reference"]) in searches["listed"]
    assert searches["by_id"]["kind"] == "search" and searches["by_id"]["search_dir"] == str(search_dir)
    assert searches["by_id"]["best"] == status["best"]


def test_a_preempted_worker_is_requeued_and_finishes_the_same_trial(searches):
    search_dir, array_id = searches["preempted"]
    rows = sacct_rows(searches["cluster"], array_id, duplicates=True)
    assert [r["State"] for r in rows if "_" in r["JobID"]][-1] == "COMPLETED"
    (trial,) = read_study(search_dir).get_trials()
    assert trial.state.name == "COMPLETE" and trial.user_attrs["worker"] == f"{array_id}_0"
    logs = "".join(p.read_text() for p in (search_dir / "submitit").rglob("*_log.out"))
    assert "received SIGUSR2" in logs and "requeued job" in logs and "resuming trial 0" in logs
    lines = (search_dir / "trials" / "trial-0000" / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(line)["epoch"] for line in lines] == list(range(24))
    got = torch.load(search_dir / "trials" / "trial-0000" / "checkpoints" / "model_final.pt", weights_only=True)
    want = torch.load(searches["reference"] / "checkpoints" / "model_final.pt", weights_only=True)
    assert got["model"].keys() == want["model"].keys()
    assert all(torch.equal(got["model"][k], want["model"][k]) for k in got["model"])


def test_a_distributed_trial_is_asked_on_rank_0_and_trained_by_every_rank(searches):
    search_dir, array_id = searches["distributed"]
    assert [r["State"] for r in array_done(searches["cluster"], array_id, 1)] == ["COMPLETED"]
    trials = read_study(search_dir).get_trials()
    assert [t.state.name for t in trials] == ["COMPLETE", "COMPLETE"]
    for t in trials:
        summary = json.loads((search_dir / t.user_attrs["run_dir"] / "summary.json").read_text())
        assert summary["world_size"] == 2 and summary["status"] == "completed"
    assert sorted(p.name for p in (search_dir / "workers").rglob("*.json")) == \
        ["r0-00000.json", "r0-00001.json", "r0-00002.json"]  # two trials, then done
