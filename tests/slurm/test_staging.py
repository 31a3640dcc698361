"""data.stage on the real local Slurm: one copy per node, reuse after a requeue, a clear failure without room.

The fake nodes n1..n3 share this host's file system; the staging directory names the node (host name and
node index), so each node's copy is counted in its own directory. Three jobs run side by side:
- spread: 2 nodes x 2 tasks (submitit), stage to a shared PATH: each node's directory logs one copy;
- requeued: a rendered sbatch script on n2 whose profile names local_scratch (data.stage: auto), requeued
  with `scontrol requeue` after its first checkpoint: the rerun reuses the copy, and the script's last
  step removes it;
- full: on n3, staging to a 64 KB tmpfs mounted in n3's own mount namespace: fails before training.
"""
from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

import hpcnn
from hpcnn.config import load_job
from hpcnn.data.pack import pack
from hpcnn.data.sources import load_splits
from hpcnn.data.staging import LOG
from hpcnn.slurm.site import commands
from tests.slurm.support import JOB_TIMEOUT_S, POLL_MAX_S, sacct_rows, tiny, wait_until

SHARDS = ["data.image_size=16", "data.channels=1", "train.max_steps_per_epoch=2", "train.eval_test=false"]
LOCAL_PROFILE = Path(hpcnn.__file__).resolve().parents[1] / "slurm_templates" / "profiles" / "local.yaml"


def _mount_tmpfs_on(cluster, node: str, target: Path) -> None:
    """A 64 KB tmpfs at ``target``, seen only by ``node``'s slurmd (and the job steps it starts)."""
    pid = (cluster.lab / "run" / f"slurmd-{node}.pid").read_text().strip()
    target.mkdir(parents=True)
    proc = subprocess.run(["nsenter", "-t", pid, "-m", "mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs",
                           str(target)], capture_output=True, text=True, timeout=30)
    if proc.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs in {node}'s mount namespace: {proc.stderr.strip()}")


@pytest.fixture(scope="module")
def jobs(slurm_cluster, tmp_path_factory):
    root = tmp_path_factory.mktemp("staging")
    digits = load_job(None, ["data.source=digits", "data.image_size=16", "data.channels=1"]).data
    pack(load_splits(digits), root / "pack", 64_000, {})
    data = [*SHARDS, "data.source=shards", f"data.root={root / 'pack'}"]
    full = root / "full"
    _mount_tmpfs_on(slurm_cluster, "n3", full)
    profile = root / "scratch-site.yaml"
    profile.write_text(LOCAL_PROFILE.read_text() + f"local_scratch: {root / 'scratch-profile'}\n")
    try:
        with pytest.MonkeyPatch.context() as mp:
            mp.setenv("HPCNN_STATE_DIR", str(root / "state"))
            spread = hpcnn.submit(None, "local", overrides=tiny(root, *data, "train.epochs=1", "name=spread",
                                                                 f"data.stage={root / 'scratch-path'}",
                                                                 "slurm.nodes=2", "slurm.tasks_per_node=2"))
            no_room = hpcnn.submit(None, "local", overrides=tiny(root, *data, "train.epochs=1", "name=full",
                                                                  f"data.stage={full}", "slurm.extra_sbatch={nodelist: n3}"))
            script = root / "requeued.sbatch"
            script.write_text(hpcnn.render(None, str(profile), overrides=tiny(
                root, *data, "train.epochs=20", "name=requeued", "data.stage=auto",
                "slurm.extra_sbatch={nodelist: n2}")))
            requeued_id = commands.sbatch(script)
            requeued_dir = root / "runs" / f"requeued-{requeued_id}"
            wait_until(lambda: sorted((requeued_dir / "checkpoints").glob("ckpt-*.pt")), 3 * JOB_TIMEOUT_S,
                       f"a first checkpoint in {requeued_dir}", poll_s=0.2)
            slurm_cluster.run(["scontrol", "requeue", requeued_id], timeout=30)
            yield {"root": root, "spread": spread, "no_room": no_room, "requeued_id": requeued_id,
                   "requeued_dir": requeued_dir, "cluster": slurm_cluster}
    finally:
        pid = (slurm_cluster.lab / "run" / "slurmd-n3.pid").read_text().strip()
        subprocess.run(["nsenter", "-t", pid, "-m", "umount", str(full)], capture_output=True, timeout=30)


def test_a_two_node_job_stages_once_per_node(jobs):
    job = jobs["spread"]
    status = job.wait(timeout_s=3 * JOB_TIMEOUT_S, poll_max_s=POLL_MAX_S)
    assert status.succeeded, status.reason
    assert status.summary["world_size"] == 4
    nodes = sorted((jobs["root"] / "scratch-path" / f"hpcnn-stage-{job.job_id}").iterdir())
    assert len(nodes) == 2, nodes  # one directory per node ...
    for node in nodes:  # ... holding one copy, made by the node's first rank while the other waited
        assert [line.split()[1] for line in (node / LOG).read_text().splitlines()] == ["copied"], node
        assert (node / "index.json").is_file()


def test_a_requeued_job_reuses_its_copy_and_the_script_removes_it(jobs):
    cluster, job_id, run_dir = jobs["cluster"], jobs["requeued_id"], jobs["requeued_dir"]

    def finished():
        rows = sacct_rows(cluster, job_id, duplicates=True)
        return rows if rows and rows[-1]["State"] in ("COMPLETED", "FAILED", "CANCELLED") else None

    rows = wait_until(finished, 3 * JOB_TIMEOUT_S, f"requeued job {job_id}", poll_s=1.0)
    assert [r["State"] for r in rows] == ["REQUEUED", "COMPLETED"], rows
    log = (run_dir / "logs" / f"{job_id}_0.out").read_text()
    assert log.count("data.stage: copied") == 1 and log.count("data.stage: reused") == 1, log[-2000:]
    assert "resuming from" in log
    assert not (jobs["root"] / "scratch-profile" / f"hpcnn-stage-{job_id}").exists()  # removed at the end


def test_a_target_without_room_fails_before_training_in_one_line(jobs):
    job = jobs["no_room"]
    status = job.wait(timeout_s=3 * JOB_TIMEOUT_S, poll_max_s=POLL_MAX_S)
    assert not status.succeeded
    assert "DatasetError: node-local storage" in status.reason and "\n" not in status.reason
    assert "has 65.5 KB free but the data needs" in status.reason and "(data.stage)" in status.reason
    assert "epoch 1/1" not in job.logs(tail=0)  # it failed before training
