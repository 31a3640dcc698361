"""Phase-aware training: a frozen-backbone phase, then fine-tuning; equal on 1 and 2 ranks; exact resume."""
from __future__ import annotations

import json
import signal
import subprocess
import sys

import pytest
import torch

from hpcnn.train.events import Callback
from tests.helpers import PYTHON, REPO, TINY, run_hpcnn

PHASES = ("phases=[{name: head, epochs: 2, trainable: head, freeze_bn: true, optim: {name: adamw, lr: 0.01}},"
          " {name: finetune, epochs: 3, trainable: all, optim: {name: sgd, lr: 0.002, momentum: 0.9},"
          " schedule: {warmup_epochs: 0}}]")
# BatchNorm, dropout and augmentation on: resume must restore every random stream and frozen statistic.
RESUME = TINY + ["model.dropout=0.2", "data.augment.hflip=true", "data.augment.rotation=10",
                 "train.checkpoint.keep_last=10", "train.log_every=3", PHASES]


def final_weights(run_dir):
    return torch.load(run_dir / "checkpoints" / "model_final.pt", weights_only=True)["model"]


class Snapshots(Callback):
    """A callback that keeps the weights at the start of training and at the end of each phase."""

    def __init__(self):
        self.states = {}

    def _keep(self, key, trainer):
        self.states[key] = {k: v.detach().clone() for k, v in trainer.raw_model.state_dict().items()}

    def on_run_start(self, trainer):
        self._keep("start", trainer)

    def on_phase_end(self, trainer, phase):
        self._keep(phase.name, trainer)


def test_frozen_phase_changes_no_backbone_tensor(tmp_path):
    from hpcnn.config import load_job
    from hpcnn.run import run_job

    cfg = load_job(None, [*RESUME, f"train.runs_dir={tmp_path}"])
    snaps = Snapshots()
    result = run_job(cfg, tmp_path / "run", callbacks=[snaps])
    assert result.status == "completed"
    start, head, tuned = snaps.states["start"], snaps.states["head"], snaps.states["finetune"]
    head_keys = {k for k in start if k.startswith("1.")}  # simple_cnn = Sequential(features, head)
    backbone = [k for k in start if k not in head_keys]
    assert any(k.endswith("running_mean") for k in backbone) and any(k.endswith("num_batches_tracked")
                                                                      for k in backbone)
    changed = [k for k in backbone if not torch.equal(start[k], head[k])]
    assert not changed, f"phase 1 changed backbone tensors: {changed}"
    assert any(not torch.equal(start[k], head[k]) for k in head_keys), "phase 1 did not train the head"
    assert any(not torch.equal(head[k], tuned[k]) for k in backbone if "running" not in k), \
        "phase 2 did not train the backbone"
    phases = result.summary["phases"]
    assert [p["name"] for p in phases] == ["head", "finetune"]
    assert [p["epochs_run"] for p in phases] == [2, 3]
    assert phases[0]["frozen_tensors"] > 0 and phases[1]["frozen_tensors"] == 0
    assert result.summary["epochs_run"] == 5
    records = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [r["phase"] for r in records] == ["head"] * 2 + ["finetune"] * 3


# The child process trains with a callback that SIGKILLs its own process at a chosen event.
KILLER = """
import os, signal, sys
from hpcnn.config import load_job
from hpcnn.run import run_job
from hpcnn.train.events import Callback

where, run_dir, *overrides = sys.argv[1:]

class Kill(Callback):
    def on_checkpoint(self, trainer, path, position):
        if where == "boundary" and (position.phase, position.phase_epoch, position.step) == (0, 2, 0):
            os.kill(os.getpid(), signal.SIGKILL)  # the end-of-phase-1 checkpoint is on disk, phase 2 not begun

    def on_log(self, trainer, point):
        if where == "phase2" and point.phase == "finetune" and point.epoch == 3 and point.step >= 6:
            os.kill(os.getpid(), signal.SIGKILL)  # mid-epoch, mid-phase 2: work since the checkpoint is lost

run_job(load_job(None, overrides), run_dir, callbacks=[Kill()])
"""


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("phases") / "reference"
    proc = run_hpcnn("train", *RESUME, f"--run-dir={run_dir}", timeout=300)
    assert proc.returncode == 0, proc.stderr
    return run_dir


@pytest.mark.slow
@pytest.mark.parametrize("where", ["boundary", "phase2"])
def test_sigkilled_two_phase_run_resumes_bitwise(tmp_path, reference, where):
    victim = tmp_path / "victim"
    proc = subprocess.run([PYTHON, "-c", KILLER, where, str(victim), *RESUME], cwd=REPO, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-2000:]
    assert not (victim / "checkpoints" / "model_final.pt").exists()
    names = sorted(p.name for p in (victim / "checkpoints").glob("ckpt-*.pt"))
    assert names[-1] == ("ckpt-e0002-s0000000.pt" if where == "boundary" else "ckpt-e0003-s0000000.pt"), names

    resumed = run_hpcnn("train", "--resume", victim, timeout=300)
    assert resumed.returncode == 0, resumed.stderr
    assert "resuming from" in resumed.stdout and f"phase 2/2" in resumed.stdout
    a, b = final_weights(reference), final_weights(victim)
    assert a.keys() == b.keys()
    differ = [k for k in a if not torch.equal(a[k], b[k])]
    assert not differ, f"resumed weights differ from the uninterrupted run: {differ}"
    sa, sb = (json.loads((d / "summary.json").read_text()) for d in (reference, victim))
    assert sa["metrics"]["test"] == sb["metrics"]["test"]
    assert [p["epochs_run"] for p in sb["phases"]] == [2, 3]


@pytest.mark.dist
@pytest.mark.slow
def test_two_phase_two_ranks_equal_one_rank(tmp_path):
    # As in test_ddp: no BatchNorm and no dropout, whose statistics/masks depend on the per-rank batch.
    equiv = TINY + ["data.source=synthetic", "data.channels=3", "data.n_train=640", "data.n_val=200",
                    "data.n_test=200", "model.dropout=0", "model.batch_norm=false", "train.batch_size=64",
                    "data.augment.hflip=true", PHASES.replace("epochs: 3", "epochs: 1")]
    one, two = tmp_path / "one", tmp_path / "two"
    p1 = run_hpcnn("train", *equiv, f"--run-dir={one}", timeout=300)
    assert p1.returncode == 0, p1.stderr
    cmd = [PYTHON, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", "-m", "hpcnn", "train",
           *equiv, f"--run-dir={two}"]
    p2 = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert p2.returncode == 0, p2.stderr[-3000:] + p2.stdout[-3000:]
    w1, w2 = final_weights(one), final_weights(two)
    worst = max((w1[k].float() - w2[k].float()).abs().max().item() for k in w1)
    assert worst < 1e-5, f"max weight difference {worst}"
    s2 = json.loads((two / "summary.json").read_text())
    assert s2["world_size"] == 2 and [p["epochs_run"] for p in s2["phases"]] == [2, 1]


def test_files_follow_the_umask(tmp_path):
    """umask 027: the project group reads results and checkpoints; others do not."""
    run_dir = tmp_path / "run"
    script = (f"umask 027 && exec {PYTHON} -m hpcnn train {' '.join(TINY)} train.epochs=1 train.plots=true "
              f"--run-dir {run_dir}")
    proc = subprocess.run(["sh", "-c", script], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    files = [p for p in run_dir.rglob("*") if p.is_file()]
    assert {"summary.json", "best.pt", "model_final.pt", "metrics.jsonl", "config.resolved.yaml"} <= \
        {p.name for p in files}
    for path in files:
        mode = path.stat().st_mode & 0o777
        assert mode == 0o640, f"{path.relative_to(run_dir)} has mode {oct(mode)}, umask 027 asks for 0o640"


def test_phase_config_errors_name_the_key():
    proc = run_hpcnn("train", *TINY, "phases=[{trainable: heads}]")
    assert proc.returncode == 2
    assert "phases[0].trainable" in proc.stderr
    proc = run_hpcnn("train", *TINY, "phases=[{optim: {lr: -1}}]")
    assert proc.returncode == 2 and "phases[0].optim.lr" in proc.stderr
    proc = run_hpcnn("train", *TINY, "dist.backend=horovod", "phases=[{epochs: 1}, {epochs: 1}]")
    assert proc.returncode == 2 and "several phases" in proc.stderr
    proc = run_hpcnn("train", *TINY, "phases=[{epoch: 2}]")
    assert proc.returncode == 2 and "phases[0].epoch" in proc.stderr and "epochs" in proc.stderr


def test_a_finished_run_continues_with_more_epochs(tmp_path):
    run_dir = tmp_path / "run"
    assert run_hpcnn("train", *TINY, "train.epochs=1", f"--run-dir={run_dir}").returncode == 0
    more = run_hpcnn("train", "--resume", run_dir, "train.epochs=3")
    assert more.returncode == 0, more.stderr
    assert "epoch 3/3" in more.stdout and json.loads((run_dir / "summary.json").read_text())["epochs_run"] == 3
