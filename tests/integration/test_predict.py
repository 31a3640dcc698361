"""`hpcnn predict`: the trainer's own test predictions, error rows for bad files, 2 ranks = 1 rank."""
from __future__ import annotations

import csv
import json
import subprocess
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from tests.helpers import PYTHON, REPO, run_hpcnn

TRAIN = ["data.source=folder", "data.image_size=32", "train.epochs=2", "train.plots=false", "train.tensorboard=false",
         "model.channels=[8,16,32]", "train.threads=1"]


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    root = tmp_path_factory.mktemp("predict")
    assert run_hpcnn("data", "generate", "--out", root / "data", "--n", "480", "--size", "40").returncode == 0
    proc = run_hpcnn("train", *TRAIN, f"data.root={root / 'data'}", f"--run-dir={root / 'run'}")
    assert proc.returncode == 0, proc.stderr
    return root


def rows(path: Path) -> list[dict]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_predictions_equal_the_trainers_test_predictions(run, tmp_path):
    out = tmp_path / "pred.csv"
    proc = run_hpcnn("predict", run / "run", run / "data" / "test", "--out", out)
    assert proc.returncode == 0, proc.stderr
    got = {r["path"]: r for r in rows(out)}

    # the trainer's evaluation path, from the same checkpoint and the run's own config
    from hpcnn.models.registry import build_model
    from hpcnn.run import config_for_resume
    from hpcnn.train.checkpoint import load_file
    from hpcnn.train.inputs import job_inputs
    from hpcnn.data.loaders import ShardBatchSampler, make_loader
    from hpcnn.train.loop import predict

    cfg = config_for_resume(run / "run")
    splits, normalize = job_inputs(cfg, announce=False)
    model, _ = build_model(cfg.model, len(splits.classes), cfg.data.channels, cfg.data.image_size)
    model.load_state_dict(load_file(run / "run" / "checkpoints" / "best.pt")["model"])
    ctx = SimpleNamespace(device=torch.device("cpu"), non_blocking=False, normalize=normalize, channels_last=False,
                          amp_dtype=None)
    test = splits.test
    logits, labels = predict(model, make_loader(test, ShardBatchSampler(len(test), 64, 0, 1), 0, False), ctx)
    probs = torch.softmax(logits, 1)
    assert len(got) == len(test.paths)
    for path, p in zip(test.paths, probs):
        row = got[path]
        assert row["class1"] == splits.classes[int(p.argmax())] and row["error"] == ""
        assert abs(float(row["prob1"]) - float(p.max())) < 1e-6
    summary = json.loads((run / "run" / "summary.json").read_text())
    correct = sum(r["class1"] == Path(r["path"]).parent.name for r in got.values())
    assert correct / len(got) == pytest.approx(summary["metrics"]["test"]["accuracy"], abs=1e-12)


def test_bad_files_are_rows_with_errors_and_the_rest_is_predicted(run, tmp_path):
    folder = tmp_path / "mixed"
    folder.mkdir()
    good = sorted((run / "data" / "test").rglob("*.png"))[:5]
    for i, src in enumerate(good):
        (folder / f"ok{i}.png").write_bytes(src.read_bytes())
    (folder / "corrupt.png").write_bytes(good[0].read_bytes()[:60])
    (folder / "empty.jpg").write_bytes(b"")
    (folder / "readme.txt.md").write_text("not an image")
    out = tmp_path / "pred.csv"
    proc = run_hpcnn("predict", run / "run", folder, "--out", out, "--json")
    assert proc.returncode == 0, proc.stderr
    result = {Path(r["path"]).name: r for r in rows(out)}
    assert {n for n, r in result.items() if r["error"]} == {"corrupt.png", "empty.jpg", "readme.txt.md"}
    assert all(result[f"ok{i}.png"]["class1"] for i in range(5))
    assert json.loads(proc.stdout[proc.stdout.index("{"):])["errors"] == 3


@pytest.mark.dist
def test_two_ranks_write_the_same_file_as_one(run, tmp_path):
    one, two = tmp_path / "one.csv", tmp_path / "two.csv"
    assert run_hpcnn("predict", run / "run", run / "data" / "test", "--out", one).returncode == 0
    cmd = [PYTHON, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", "-m", "hpcnn", "predict",
           str(run / "run"), str(run / "data" / "test"), "--out", str(two)]
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert two.read_text() == one.read_text()


def test_missing_input_is_one_clear_error(run, tmp_path):
    proc = run_hpcnn("predict", run / "run", tmp_path / "nope", "--out", tmp_path / "x.csv")
    assert proc.returncode == 2 and "input not found" in proc.stderr.strip().splitlines()[-1]
    proc = run_hpcnn("predict", tmp_path, tmp_path, "--out", tmp_path / "x.csv")
    assert proc.returncode == 2 and "not a run directory" in proc.stderr


PLAIN_TORCH = """
import json, sys
import numpy as np, torch
from PIL import Image
model_file, meta_file, *paths = sys.argv[1:]
meta = json.load(open(meta_file))
size, inp = meta["input"]["shape"][-1], meta["input"]
x = []
for p in paths:
    im = Image.open(p).convert("RGB").resize((size, size), Image.BILINEAR)
    x.append(torch.from_numpy(np.asarray(im, dtype=np.uint8).copy()).permute(2, 0, 1).float() / 255.0)
x = (torch.stack(x) - torch.tensor(inp["mean"]).view(1, -1, 1, 1)) / torch.tensor(inp["std"]).view(1, -1, 1, 1)
probs = torch.softmax(torch.export.load(model_file).module()(x), 1)
assert "hpcnn" not in sys.modules
print(json.dumps([[meta["classes"][int(p.argmax())], float(p.max())] for p in probs]))
"""


def test_exported_model_runs_without_hpcnn_and_agrees(run, tmp_path):
    model = tmp_path / "model.pt2"
    proc = run_hpcnn("export", run / "run", "--out", model)
    assert proc.returncode == 0, proc.stderr
    meta = json.loads(model.with_suffix(".json").read_text())
    assert meta["classes"] and meta["input"]["center_crop"] is None
    images = sorted((run / "data" / "test").rglob("*.png"))[:12]
    out = tmp_path / "pred.csv"
    assert run_hpcnn("predict", run / "run", *images, "--out", out).returncode == 0
    plain = subprocess.run([PYTHON, "-c", PLAIN_TORCH, str(model), str(model.with_suffix(".json")), *map(str, images)],
                           cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert plain.returncode == 0, plain.stderr[-2000:]
    for (cls, prob), row in zip(json.loads(plain.stdout), rows(out)):
        assert cls == row["class1"] and abs(prob - float(row["prob1"])) < 1e-5
