"""`hpcnn compare` on real tiny runs: the differing keys name the lines and columns, the PNG is drawn."""
from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from hpcnn.config import load_job
from hpcnn.run import run_job
from tests.helpers import TINY, run_hpcnn

VARIANTS = {"base": [], "fast": ["optim.lr=0.03"], "fast-nodrop": ["optim.lr=0.03", "model.dropout=0.0"]}


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("compare")
    for name, overrides in VARIANTS.items():
        assert run_job(load_job(None, [*TINY, "monitor.enabled=false", *overrides]), root / name).status == "completed"
    return root


def check_png(path, min_size=(800, 300)):
    with open(path, "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"
    with Image.open(path) as image:
        assert image.size[0] >= min_size[0] and image.size[1] >= min_size[1]
        pixels = np.asarray(image.convert("RGB"), dtype=np.float32)
    assert pixels.std() > 5  # lines, axes and text, not a blank canvas
    return pixels


def test_compare_names_runs_by_their_differences_and_tabulates_final_metrics(runs, tmp_path):
    out = tmp_path / "curves.png"
    dirs = [runs / name for name in VARIANTS]
    p = run_hpcnn("compare", *dirs, "--out", out, "--json", timeout=120)
    assert p.returncode == 0, p.stderr
    data = json.loads(p.stdout)
    assert data["differing_keys"] == ["model.dropout", "optim.lr"]
    assert data["metric"] == "val.accuracy" and data["png"] == str(out)
    assert [r["label"] for r in data["runs"]] == ["model.dropout=0.3 optim.lr=0.003", "model.dropout=0.3 optim.lr=0.03",
                                                   "model.dropout=0.0 optim.lr=0.03"]
    for row, name in zip(data["runs"], VARIANTS):
        summary = json.loads((runs / name / "summary.json").read_text())
        assert row["state"] == "completed" and row["epochs"] == 2
        assert row["metrics"]["val.accuracy"] == summary["metrics"]["val"]["accuracy"]
        assert row["metrics"]["test.accuracy"] == summary["metrics"]["test"]["accuracy"]
    check_png(out)

    table = run_hpcnn("compare", *dirs, "--out", out, "--metric", "val.f1_macro", timeout=120)
    assert table.returncode == 0, table.stderr
    lines = table.stdout.splitlines()
    assert lines[0].split()[:5] == ["run", "model.dropout", "optim.lr", "state", "epochs"]
    assert lines[0].split()[5] == "val.f1_macro"
    assert lines[3].split()[:3] == ["fast-nodrop", "0.0", "0.03"]
    assert "differing config keys: model.dropout, optim.lr" in table.stdout


def test_compare_reports_what_is_wrong_in_one_line(runs, tmp_path):
    (tmp_path / "plain").mkdir()
    p = run_hpcnn("compare", runs / "base", tmp_path / "plain", "--out", tmp_path / "x.png", timeout=120)
    assert p.returncode == 2 and "not a run or sweep directory" in p.stderr and str(tmp_path / "plain") in p.stderr
    assert len(p.stderr.strip().splitlines()) == 1
    p = run_hpcnn("compare", runs / "base", "--metric", "val.nope", "--out", tmp_path / "x.png", timeout=120)
    assert p.returncode == 2 and "no run has 'val.nope'" in p.stderr
    assert not (tmp_path / "x.png").exists()
