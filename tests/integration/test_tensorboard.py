"""TensorBoard beyond scalars: histograms, graph and projector data, read back with TensorBoard's own readers."""
from __future__ import annotations

import logging
import math
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from google.protobuf import text_format
from PIL import Image
from tensorboard.backend.event_processing import event_accumulator as ea
from tensorboard.plugins.projector.projector_config_pb2 import ProjectorConfig
from torch import nn
from torch.utils.tensorboard import SummaryWriter

from hpcnn.config import load_job
from hpcnn.run import run_job
from hpcnn.train.tensorboard import write_graph
from tests.helpers import TINY

TB = [*TINY, "train.tensorboard=true", "monitor.enabled=false"]
EXTRAS_OFF = ["tensorboard.graph=false", "tensorboard.histograms_every=0", "tensorboard.embeddings=false"]
TEST_IMAGES = 269  # digits: 15% of 1,797 held out for test


def train(run_dir: Path, *overrides: str) -> Path:
    result = run_job(load_job(None, [*TB, *overrides]), run_dir)
    assert result.status == "completed"
    return run_dir


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("tb")
    return {
        "all": train(root / "all", "tensorboard.histograms_every=1", "tensorboard.embeddings=true"),
        "epoch": train(root / "epoch", "tensorboard.histograms_every=2", "tensorboard.embeddings=true",
                       "tensorboard.embeddings_epoch=1", "tensorboard.embeddings_max=50", "tensorboard.graph=false"),
        "off": train(root / "off", *EXTRAS_OFF),
    }


def events(run_dir: Path) -> ea.EventAccumulator:
    acc = ea.EventAccumulator(str(run_dir / "tb"), size_guidance={ea.HISTOGRAMS: 0, ea.SCALARS: 0})
    acc.Reload()
    return acc


def steps_per_epoch(run_dir: Path) -> int:
    return [e.step for e in events(run_dir).Scalars("val/accuracy")][0]


def param_names(run_dir: Path) -> list[str]:
    state = torch.load(run_dir / "checkpoints" / "model_final.pt", weights_only=True)["model"]
    return [k for k in state if not k.endswith(("running_mean", "running_var", "num_batches_tracked"))]


def projector(run_dir: Path) -> list:
    config = ProjectorConfig()
    text_format.Parse((run_dir / "tb" / "projector_config.pbtxt").read_text(), config)
    return list(config.embeddings)


def test_histograms_of_every_weight_and_gradient_at_every_due_epoch(runs):
    names = param_names(runs["all"])
    acc = events(runs["all"])
    spe = steps_per_epoch(runs["all"])
    expected = {f"weights/{n}" for n in names} | {f"gradients/{n}" for n in names}
    assert set(acc.Tags()["histograms"]) == expected
    for tag in (f"weights/{names[0]}", f"gradients/{names[-1]}"):
        histograms = acc.Histograms(tag)
        assert [h.step for h in histograms] == [spe, 2 * spe]
        assert histograms[-1].histogram_value.num > 0
    gradient = acc.Histograms(f"gradients/{names[-1]}")[-1].histogram_value
    assert gradient.max > gradient.min  # a real gradient, not zeros
    # every 2 epochs in a 2-epoch run: once, at the end of epoch 2
    later = events(runs["epoch"])
    assert [h.step for h in later.Histograms(f"weights/{names[0]}")] == [2 * steps_per_epoch(runs["epoch"])]


def test_graph_is_written_once_and_shows_the_network(runs):
    acc = events(runs["all"])
    assert acc.Tags()["graph"]
    ops = {node.op for node in acc.Graph().node}
    assert {"aten::_convolution", "aten::linear"} <= ops
    assert not events(runs["epoch"]).Tags()["graph"]


def test_projector_has_features_labels_predictions_and_sprite_for_the_test_split(runs):
    run_dir = runs["all"]
    (embedding,) = projector(run_dir)
    assert embedding.tensor_name.startswith("test_features")
    tensors = np.loadtxt(run_dir / "tb" / embedding.tensor_path, delimiter="\t")
    assert tensors.shape == (TEST_IMAGES, 256)  # the input of simple_cnn's last Linear: model.hidden=[256]
    assert np.isfinite(tensors).all() and tensors.std() > 0
    rows = (run_dir / "tb" / embedding.metadata_path).read_text().splitlines()
    assert rows[0].split("\t") == ["class", "predicted"] and len(rows) == TEST_IMAGES + 1
    classes = {str(d) for d in range(10)}
    assert all(set(r.split("\t")) <= classes for r in rows[1:])
    assert list(embedding.sprite.single_image_dim) == [16, 16]
    side = math.ceil(math.sqrt(TEST_IMAGES)) * 16
    with Image.open(run_dir / "tb" / embedding.sprite.image_path) as sprite:
        assert sprite.size == (side, side)


def test_projector_at_a_chosen_epoch_holds_at_most_the_configured_rows(runs):
    run_dir = runs["epoch"]
    (embedding,) = projector(run_dir)
    assert f"{steps_per_epoch(run_dir):05d}/test_features" in embedding.tensor_path  # after epoch 1
    tensors = np.loadtxt(run_dir / "tb" / embedding.tensor_path, delimiter="\t")
    assert tensors.shape[0] == 50
    assert len((run_dir / "tb" / embedding.metadata_path).read_text().splitlines()) == 51


def test_extras_off_leave_only_scalars_and_do_not_change_training(runs):
    off = runs["off"]
    acc = events(off)
    tags = acc.Tags()
    assert "val/accuracy" in tags["scalars"] and "train/loss" in tags["scalars"]
    assert tags["histograms"] == [] and not tags["graph"]
    assert not (off / "tb" / "projector_config.pbtxt").exists()
    assert [p for p in (off / "tb").iterdir() if p.is_dir()] == []
    # the extras only look: the same weights come out with all of them on
    a = torch.load(off / "checkpoints" / "model_final.pt", weights_only=True)["model"]
    b = torch.load(runs["all"] / "checkpoints" / "model_final.pt", weights_only=True)["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_extras_are_ignored_with_one_warning_when_tensorboard_is_off(tmp_path, capsys):
    run_dir = tmp_path / "run"
    result = run_job(load_job(None, [*TINY, "train.epochs=1", "tensorboard.embeddings=true"]), run_dir)
    assert result.status == "completed"
    assert not (run_dir / "tb").exists() or not any((run_dir / "tb").iterdir())
    out = capsys.readouterr()
    assert (out.out + out.err).count("are ignored: train.tensorboard is false") == 1


class DictOutput(nn.Module):
    """A model the tracer refuses (strict tracing and a dict output)."""

    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(16 * 16, 3)

    def forward(self, x):
        return {"logits": self.fc(x.flatten(1))}


def test_a_model_that_does_not_trace_costs_one_warning_line_not_the_run(tmp_path, capsys):
    from hpcnn.data.imagesets import TensorImageSet

    images = TensorImageSet(torch.randint(0, 255, (4, 1, 16, 16), dtype=torch.uint8), torch.tensor([0, 1, 2, 0]))
    trainer = SimpleNamespace(raw_model=DictOutput(), splits=SimpleNamespace(val=images), device=torch.device("cpu"),
                              normalize=lambda x: x, cfg=load_job(None, []))
    records = []
    handler = logging.Handler()
    handler.emit = records.append
    logger = logging.getLogger("hpcnn.train")
    logger.addHandler(handler)
    writer = SummaryWriter(str(tmp_path / "tb"))
    try:
        write_graph(writer, trainer)
    finally:
        writer.close()
        logger.removeHandler(handler)
    warnings = [r.getMessage() for r in records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and warnings[0].startswith("TensorBoard graph skipped: DictOutput does not trace")
    assert "\n" not in warnings[0]
    assert capsys.readouterr().out == ""  # the tracer's own printout is swallowed
    assert trainer.raw_model.training  # the model's mode is restored


def test_a_resumed_run_keeps_what_was_logged_up_to_its_checkpoint(tmp_path):
    run_dir = train(tmp_path / "run", "train.epochs=1", "tensorboard.histograms_every=1")
    result = run_job(load_job(None, [*TB, "train.epochs=2", "tensorboard.histograms_every=1"]), run_dir, resume="auto")
    assert result.status == "completed" and result.summary["epochs_run"] == 2
    acc = events(run_dir)
    spe = steps_per_epoch(run_dir)
    assert [e.step for e in acc.Scalars("val/accuracy")] == [spe, 2 * spe]  # epoch 1's point survives the purge
    name = param_names(run_dir)[0]
    assert [h.step for h in acc.Histograms(f"weights/{name}")] == [spe, 2 * spe]
    assert acc.Tags()["graph"]  # traced by the first process, not again
