"""Kill a training process after epoch 2 of 6, resume it, and get bitwise the same weights (CPU)."""
from __future__ import annotations

import json
import signal
import subprocess
import time

import pytest
import torch

from tests.helpers import REPO, TINY, hpcnn_cmd, run_hpcnn

RESUME = TINY + ["train.epochs=6", "data.image_size=24", "model.channels=[16,32]", "model.dropout=0.2",
                 "data.augment.hflip=true", "data.augment.rotation=10", "train.checkpoint.keep_last=3"]


def final_weights(run_dir):
    return torch.load(run_dir / "checkpoints" / "model_final.pt", weights_only=True)["model"]


@pytest.mark.slow
def test_killed_run_resumes_bitwise(tmp_path):
    ref = tmp_path / "reference"
    proc = run_hpcnn("train", *RESUME, f"--run-dir={ref}", timeout=300)
    assert proc.returncode == 0, proc.stderr

    victim = tmp_path / "victim"
    p = subprocess.Popen(hpcnn_cmd("train", *RESUME, f"--run-dir={victim}"), cwd=REPO,
                         stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    target = victim / "checkpoints" / "ckpt-e0002-s0000000.pt"
    deadline = time.monotonic() + 240
    while not target.exists() and p.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)  # polling for a file the child writes; the kill itself is the event under test
    p.send_signal(signal.SIGKILL)
    p.wait(timeout=30)
    assert p.returncode == -signal.SIGKILL, "the run finished before it could be killed; make epochs longer"
    assert not (victim / "checkpoints" / "model_final.pt").exists()

    proc = run_hpcnn("train", "--resume", victim, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "resuming from" in proc.stdout
    a, b = final_weights(ref), final_weights(victim)
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a), "resumed weights differ from the uninterrupted run"
    sa, sb = (json.loads((d / "summary.json").read_text()) for d in (ref, victim))
    assert sa["metrics"]["val"]["accuracy"] == sb["metrics"]["val"]["accuracy"]
    assert sb["epochs_run"] == 6


def test_timed_mid_epoch_checkpoints_do_not_change_training(tmp_path):
    """checkpoint.every_minutes bounds the work lost where a site never signals; it must not perturb the run."""
    plain, timed = tmp_path / "plain", tmp_path / "timed"
    args = [*TINY, "model.dropout=0.2", "data.augment.hflip=true", "train.log_every=2"]
    assert run_hpcnn("train", *args, f"--run-dir={plain}", timeout=300).returncode == 0
    proc = run_hpcnn("train", *args, "train.checkpoint.every_minutes=0.0001", "train.checkpoint.keep_last=100",
                     f"--run-dir={timed}", timeout=300)
    assert proc.returncode == 0, proc.stderr
    names = [p.name for p in (timed / "checkpoints").glob("ckpt-*.pt")]
    assert any(not n.endswith("s0000000.pt") for n in names), names  # mid-epoch checkpoints were written
    a, b = final_weights(plain), final_weights(timed)
    assert all(torch.equal(a[k], b[k]) for k in a)


# Tiny SimCLR: the contrastive objective through the same Trainer (no BatchNorm: see test_simclr.py's EQUIV).
SIMCLR = ["ssl.method=simclr", "data.source=synthetic", "data.image_size=16", "data.channels=3", "data.n_train=128",
          "data.n_val=64", "data.n_test=64", "model.channels=[8,16]", "model.batch_norm=false", "train.batch_size=32",
          "train.plots=false", "train.tensorboard=false", "train.threads=1", "monitor.enabled=false",
          "ssl.projection_hidden=32", "ssl.projection_dim=16", "ssl.linear_probe=false"]


@pytest.mark.parametrize("objective", ["supervised", "simclr"])
def test_run_killed_mid_epoch_resumes_bitwise(tmp_path, objective):
    """SIGKILL right after a mid-epoch checkpoint (timed checkpoints at every step), resume: the same weights."""
    base = TINY if objective == "supervised" else SIMCLR
    args = [*base, "train.epochs=2", "train.max_steps_per_epoch=4", "train.log_every=1",
            "data.augment.hflip=true", "train.checkpoint.keep_last=100"]
    ref, victim = tmp_path / "reference", tmp_path / "victim"
    proc = run_hpcnn("train", *args, f"--run-dir={ref}", timeout=300)
    assert proc.returncode == 0, proc.stderr
    p = subprocess.Popen(hpcnn_cmd("train", *args, "train.checkpoint.every_minutes=0.00001", f"--run-dir={victim}"),
                         cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    target = victim / "checkpoints" / "ckpt-e0001-s0000002.pt"  # epoch 2, after its second step
    deadline = time.monotonic() + 240
    while not target.exists() and p.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)  # polling for a file the child writes; the kill itself is the event under test
    p.send_signal(signal.SIGKILL)
    p.wait(timeout=30)
    assert p.returncode == -signal.SIGKILL, "the run finished before it could be killed"
    newest = sorted(p.name for p in (victim / "checkpoints").glob("ckpt-*.pt"))[-1]
    assert newest.startswith("ckpt-e0001-") and not newest.endswith("s0000000.pt"), newest  # mid-epoch

    proc = run_hpcnn("train", "--resume", victim, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "resuming from" in proc.stdout + proc.stderr
    a, b = final_weights(ref), final_weights(victim)
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a), "resumed weights differ from the uninterrupted run"
