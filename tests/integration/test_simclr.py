"""SimCLR pretraining: 2 gloo ranks equal 1 rank, exact resume, and the representation is measured.

The measured test pretrains a small CNN on the embedded synthetic galaxies without labels, then
compares linear probes (logistic regression on frozen features, train split -> test split) on
the pretrained backbone and on the same backbone with its random initial weights.
"""
from __future__ import annotations

import json
import subprocess
import time

import pytest
import torch

from hpcnn.config import load_job
from hpcnn.dist import SingleComm
from hpcnn.ssl import SimCLRObjective, probe_weights
from hpcnn.train.trainer import Trainer
from tests.helpers import PYTHON, REPO
from tests.integration.test_ddp import free_port, rank_env

# No BatchNorm: its statistics would cover one rank's half batch (torch's SyncBatchNorm is CUDA-only).
# (The backbone has no dropout: simple_cnn's dropout sits in the head, which pretraining removes.)
EQUIV = ["ssl.method=simclr", "data.source=synthetic", "data.image_size=16", "data.channels=3", "data.n_train=128",
         "data.n_val=64", "data.n_test=64", "model.channels=[8,16]", "model.batch_norm=false",
         "train.batch_size=32", "train.epochs=2", "train.max_steps_per_epoch=2", "train.log_every=1",
         "train.plots=false", "train.tensorboard=false", "train.threads=1", "monitor.enabled=false",
         "optim.name=sgd", "optim.lr=0.05", "optim.momentum=0.9", "schedule.warmup_epochs=0", "ssl.temperature=0.3",
         "ssl.projection_hidden=32", "ssl.projection_dim=16", "data.augment.rotation=180"]

# One rank of a run: "grads" dumps the first step's loss and gradients, "fit" pretrains.
RANK = """
import sys, torch
from hpcnn.config import load_job
from hpcnn.dist import make_comm
from hpcnn.env import detect_world
from hpcnn.ssl import SimCLRObjective
from hpcnn.train.loop import prepare
from hpcnn.train.trainer import Trainer

mode, out, run_dir, *overrides = sys.argv[1:]
torch.set_num_threads(1)
cfg = load_job(None, overrides)
world = detect_world()
comm = make_comm(world, "auto", torch.device("cpu"), 60)
if comm.is_main:
    __import__("pathlib").Path(run_dir).mkdir(parents=True, exist_ok=True)
comm.barrier()
trainer = Trainer(cfg, comm, run_dir, torch.device("cpu"), objective=SimCLRObjective(cfg))
if mode == "grads":
    trainer._enter_phase(trainer.phases[0])
    x, y = next(iter(trainer.train_loader))
    loss = trainer.ctx.criterion(trainer.train_model(prepare(x, trainer.ctx, 0, 0)), y)
    loss.backward()
    grads = {n: p.grad.clone() for n, p in trainer.raw_model.named_parameters()}  # DDP-averaged over ranks
    result = {"loss": comm.mean(loss.item()), "grads": grads, "local_batch": len(x)}
else:
    result = {"status": trainer.fit().status}
if comm.is_main:
    torch.save(result, out)
comm.shutdown()
"""


def launch(tmp_path, name, ranks, mode, *extra):
    """Run RANK on ``ranks`` processes (gloo when 2); rank 0's result."""
    out, run_dir = tmp_path / f"{name}.pt", tmp_path / name
    args = [PYTHON, "-c", RANK, mode, str(out), str(run_dir), *EQUIV, *extra]
    port = free_port()
    procs = [subprocess.Popen(args, cwd=REPO, env=rank_env(r, port) if ranks > 1 else None, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True) for r in range(ranks)]
    outputs = [p.communicate(timeout=240)[0] for p in procs]
    assert all(p.returncode == 0 for p in procs), "\n".join(o[-3000:] for o in outputs)
    return torch.load(out, weights_only=True), run_dir


@pytest.mark.dist
def test_two_gloo_ranks_give_the_loss_and_gradients_of_one_rank(tmp_path):
    one, _ = launch(tmp_path, "one", 1, "grads")
    two, _ = launch(tmp_path, "two", 2, "grads")
    assert one["local_batch"] == 32 and two["local_batch"] == 16
    assert abs(one["loss"] - two["loss"]) < 1e-5, (one["loss"], two["loss"])
    assert one["grads"].keys() == two["grads"].keys()
    worst = max((one["grads"][k] - two["grads"][k]).abs().max().item() for k in one["grads"])
    scale = max(g.abs().max().item() for g in one["grads"].values())
    print(f"\nNT-Xent 1 rank {one['loss']:.7f} vs 2 ranks {two['loss']:.7f}; max gradient difference {worst:.2e} "
          f"(largest gradient {scale:.2e})")
    assert worst < 1e-5 and scale > 1e-3


@pytest.mark.dist
@pytest.mark.slow
def test_two_gloo_ranks_pretrain_like_one_rank(tmp_path):
    _, one = launch(tmp_path, "one", 1, "fit")
    _, two = launch(tmp_path, "two", 2, "fit")
    losses = [[json.loads(line)["train"]["loss"] for line in (d / "metrics.jsonl").read_text().splitlines()]
              for d in (one, two)]
    assert len(losses[0]) == 2 and all(abs(a - b) < 1e-5 for a, b in zip(*losses)), losses
    w1, w2 = (torch.load(d / "checkpoints" / "model_final.pt", weights_only=True)["model"] for d in (one, two))
    worst = max((w1[k] - w2[k]).abs().max().item() for k in w1)
    assert worst < 1e-5, f"max weight difference {worst}"
    s1, s2 = (json.loads((d / "summary.json").read_text()) for d in (one, two))
    assert s2["world_size"] == 2 and s2["per_rank_batch"] == 16 and s1["global_batch"] == s2["global_batch"] == 32
    assert s1["metrics"]["test"]["accuracy"] == s2["metrics"]["test"]["accuracy"]


def run_in_process(run_dir, overrides, stop=lambda: False, resume=None):
    cfg = load_job(None, [*EQUIV, *overrides])
    run_dir.mkdir(parents=True, exist_ok=True)
    return Trainer(cfg, SingleComm(), run_dir, torch.device("cpu"), stop=stop, resume=resume,
                   objective=SimCLRObjective(cfg)).fit()


def test_run_directory_serves_as_weights_and_resume_is_exact(tmp_path):
    """Stopped in the middle of epoch 2 and resumed: the same weights as a run never stopped."""
    overrides = ["model.batch_norm=true", "train.max_steps_per_epoch=3", "train.checkpoint.keep_last=10"]
    full = run_in_process(tmp_path / "full", overrides)
    assert full.status == "completed"
    asked = {"n": 0}

    def stop():  # asked after every step (log_every=1) and at the end of each epoch: 3 + 1 in epoch 1
        asked["n"] += 1
        return asked["n"] >= 6  # from the second step of epoch 2 on

    assert run_in_process(tmp_path / "cut", overrides, stop=stop).status == "preempted"
    assert not (tmp_path / "cut" / "checkpoints" / "model_final.pt").exists()
    assert sorted(p.name for p in (tmp_path / "cut" / "checkpoints").iterdir())[-1] == "ckpt-e0001-s0000002.pt"
    resumed = run_in_process(tmp_path / "cut", overrides, resume="auto")
    assert resumed.status == "completed" and resumed.summary["epochs_run"] == 2
    a, b = (torch.load(d / "checkpoints" / "model_final.pt", weights_only=True) for d in (tmp_path / "full",
                                                                                            tmp_path / "cut"))
    assert a["model"].keys() == b["model"].keys()
    assert all(torch.equal(a["model"][k], b["model"][k]) for k in a["model"])
    # the checkpoint is the configured classifier, head included: it loads as the start of a supervised job
    from hpcnn.models import create_model

    cfg = load_job(None, [*EQUIV, *overrides])
    create_model(cfg.model, 8, 3, 16).load_state_dict(a["model"])
    summary = json.loads((tmp_path / "full" / "summary.json").read_text())
    assert summary["status"] == "completed" and summary["world_size"] == 1
    assert summary["phases"][0]["epochs_run"] == 2 and summary["images_per_second"] > 0
    assert "contrastive_loss" in summary["metrics"]["val"] and 0 <= summary["metrics"]["test"]["accuracy"] <= 1
    records = [json.loads(line) for line in (tmp_path / "full" / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in records] == [0, 1] and all(r["train"]["loss"] > 0 for r in records)


# About 25 s on two idle CPU cores (about 2 minutes when they are shared); docs/ssl.md has the numbers.
MEASURED = ["ssl.method=simclr", "data.source=synthetic", "data.image_size=32", "data.n_train=2048",
            "data.n_val=256", "data.n_test=1000", "model.name=simple_cnn", "model.channels=[16,32,64,64]",
            "train.batch_size=128", "train.epochs=20", "train.log_every=1000", "train.plots=false",
            "train.tensorboard=false", "monitor.enabled=false", "optim.lr=0.003", "optim.weight_decay=0.0001",
            "data.augment.rotation=180", "data.augment.vflip=true"]


@pytest.mark.slow
def test_simclr_probe_beats_random_weights_by_15_points(tmp_path):
    torch.set_num_threads(2)
    cfg = load_job(None, [*MEASURED, f"train.runs_dir={tmp_path}"])
    t0 = time.perf_counter()
    random_probe = probe_weights(cfg, None)["test"]["accuracy"]
    (tmp_path / "run").mkdir()
    t1 = time.perf_counter()
    result = Trainer(cfg, SingleComm(), tmp_path / "run", torch.device("cpu"), objective=SimCLRObjective(cfg)).fit()
    t2 = time.perf_counter()
    simclr_probe = probe_weights(cfg, tmp_path / "run")["test"]["accuracy"]
    assert simclr_probe == result.summary["metrics"]["test"]["accuracy"]  # the run's own probe, reproduced
    message = (f"linear probe test accuracy: SimCLR-pretrained {simclr_probe:.3f}, random weights {random_probe:.3f}, "
               f"difference {100 * (simclr_probe - random_probe):+.1f} points (pretraining {t2 - t1:.0f} s, "
               f"random probe {t1 - t0:.0f} s)")
    print("\n" + message)
    assert simclr_probe - random_probe >= 0.15, message
