"""`hpcnn predict --profile local --shards N` on the real local Slurm: one array, collected = 1 rank,
a lost shard is rerun alone by repeating the command."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from hpcnn.slurm.jobs.predict_array import PredictArray

from tests.helpers import run_hpcnn
from tests.slurm.support import JOB_TIMEOUT_S, POLL_MAX_S, hpcnn, sacct_rows, state_dir, wait_until

__all__ = ["state_dir"]

TRAIN = ["data.source=folder", "data.image_size=32", "train.epochs=1", "train.plots=false", "train.tensorboard=false",
         "model.channels=[8,16]", "train.batch_size=32", "train.threads=1", "monitor.enabled=false"]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("predict-array")
    assert run_hpcnn("data", "generate", "--out", root / "data", "--n", "150", "--size", "40").returncode == 0
    proc = run_hpcnn("train", *TRAIN, f"data.root={root / 'data'}", f"--run-dir={root / 'run'}")
    assert proc.returncode == 0, proc.stderr[-3000:]
    return root


def test_three_shards_collect_to_the_one_rank_file_and_a_lost_shard_reruns_alone(slurm_cluster, trained, tmp_path,
                                                                                 state_dir):
    run, inputs = trained / "run", trained / "data"
    one = tmp_path / "one.csv"
    hpcnn("predict", run, inputs, "--out", one, timeout=300)

    out = tmp_path / "sharded.csv"
    submit = ["predict", run, inputs, "--out", out, "--profile", "local", "--shards", "3", "--max-parallel", "2",
              "--mem-gb", "2", "--json"]
    first = json.loads(hpcnn(*submit).stdout)  # lists, pre-flights, submits and returns
    assert first["submitted"] == [0, 1, 2] and len(first["arrays"]) == 1
    shards_dir = Path(first["shards_dir"])
    assert shards_dir == tmp_path / "sharded.csv.shards"
    array_id = first["arrays"][0]
    assert "#SBATCH --array=0-2%2" in (shards_dir / "submission-0.sbatch").read_text()

    preds = PredictArray.from_dir(shards_dir)
    statuses = preds.wait(timeout_s=3 * JOB_TIMEOUT_S, poll_max_s=POLL_MAX_S)
    assert [s.state for s in statuses] == ["COMPLETED"] * 3, [s.reason for s in statuses]
    assert accounted(slurm_cluster, array_id, 3) == [f"{array_id}_{i}" for i in range(3)]
    assert "3 COMPLETED" in hpcnn("status", array_id).stdout  # the records registry knows the array
    ranked = json.loads(hpcnn("results", shards_dir, "--json").stdout)  # shards ranked by their images/s
    assert sorted(r["index"] for r in ranked) == [0, 1, 2] and all(r["value"] > 0 for r in ranked)

    hpcnn("predict", "--collect", shards_dir)
    assert out.read_bytes() == one.read_bytes()

    # a shard lost after the run: collect names it, the same command reruns only it
    kept = {i: (shards_dir / f"shard-{i:05d}" / "rows.csv").stat().st_mtime_ns for i in (0, 2)}
    (shards_dir / "shard-00001" / "rows.csv").unlink()
    out.unlink()
    refused = hpcnn("predict", "--collect", shards_dir, check=False)
    assert refused.returncode == 2 and "1 of 3 shards have no output yet: 1" in refused.stderr
    assert not out.exists()

    again = json.loads(hpcnn(*submit).stdout)
    assert again["submitted"] == [1] and len(again["arrays"]) == 1
    rerun = again["arrays"][0]
    record = json.loads((shards_dir / "sweep.json").read_text())
    assert record["submissions"][-1] == {"submitted_at": record["submissions"][-1]["submitted_at"],
                                         "arrays": [rerun], "shards": [1]}
    preds = PredictArray.from_dir(shards_dir)
    assert preds.tasks[1].job_id == f"{rerun}_0" and preds.tasks[0].job_id == f"{array_id}_0"
    statuses = preds.wait(timeout_s=2 * JOB_TIMEOUT_S, poll_max_s=POLL_MAX_S)
    assert all(s.succeeded for s in statuses), [s.reason for s in statuses]
    assert accounted(slurm_cluster, rerun, 1) == [f"{rerun}_0"], "one task: shard 1 only"
    preds.collect()  # the Python handle merges the same way
    assert out.read_bytes() == one.read_bytes()
    assert {i: (shards_dir / f"shard-{i:05d}" / "rows.csv").stat().st_mtime_ns for i in (0, 2)} == kept

    nothing = json.loads(hpcnn(*submit).stdout)  # every shard has output: nothing is submitted
    assert nothing["submitted"] == [] and nothing["arrays"] == []

    (shards_dir / "shard-00002" / "rows.csv").unlink()  # --resubmit DIR: the stored request, missing shards only
    resubmitted = json.loads(hpcnn("predict", "--resubmit", shards_dir, "--json").stdout)
    assert resubmitted["submitted"] == [2]
    PredictArray.from_dir(shards_dir).wait(timeout_s=2 * JOB_TIMEOUT_S, poll_max_s=POLL_MAX_S)
    hpcnn("predict", "--collect", out, "--out", tmp_path / "again.csv")  # naming FILE finds FILE.shards
    assert (tmp_path / "again.csv").read_bytes() == one.read_bytes()


def test_preflight_fails_before_anything_is_queued(slurm_cluster, trained, tmp_path, state_dir):
    out = tmp_path / "p.csv"
    proc = hpcnn("predict", tmp_path, trained / "data", "--out", out, "--profile", "local", "--shards", "2",
                 check=False)
    assert proc.returncode == 2 and "no best.pt or model_final.pt" in proc.stderr
    proc = hpcnn("predict", trained / "run", trained / "data", "--out", out, "--profile", "local", "--shards", "2",
                 "--time", "48:00:00", check=False)
    assert proc.returncode == 2 and "exceeds the site limit" in proc.stderr.strip().splitlines()[-1]
    proc = hpcnn("predict", trained / "run", trained / "data", "--out", out, "--profile", "local", "--shards", "2",
                 "--gpus-per-node", "2", check=False)
    assert proc.returncode == 2 and "at most one GPU" in proc.stderr.strip().splitlines()[-1]
    empty = tmp_path / "empty"
    empty.mkdir()
    proc = hpcnn("predict", trained / "run", empty, "--out", out, "--profile", "local", "--shards", "2", check=False)
    assert proc.returncode == 2 and "no inputs to predict" in proc.stderr
    assert not (tmp_path / "p.csv.shards" / "sweep.json").exists()


def accounted(cluster, array_id: str, expected: int) -> list[str]:
    """The array's task ids in Slurm's accounting, written asynchronously by slurmdbd: polled until `expected`
    task rows (ID_INDEX) of this session are there (-D: an older job with the same id must not hide this one's
    rows). A one-task array can show as a bare "ID" row until slurmdbd records its task index: not a task yet."""
    def ids():
        rows = {r["JobID"] for r in sacct_rows(cluster, array_id, duplicates=True) if "_" in r["JobID"]}
        return sorted(rows) if len(rows) >= expected else None

    return wait_until(ids, 60, f"accounting rows of array {array_id}")
