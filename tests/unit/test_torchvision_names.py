"""The login node's torchvision names (hpcnn/config/torchvision_names.json) are the installed torchvision's."""
from __future__ import annotations

import subprocess
import sys

import pytest

from hpcnn.config.torchvision_names import live_names, model_names, names, weights_table
from tests.helpers import REPO

torchvision = pytest.importorskip("torchvision")


def test_data_file_matches_the_installed_torchvision():
    live = live_names(torchvision.models, torchvision.__version__)
    stored = names()
    assert stored["models"] == live["models"] and stored["weights"] == live["weights"], (
        f"torchvision {torchvision.__version__} changed its model or weights names: "
        "regenerate the file with `python scripts/torchvision_names.py`")


def test_the_table_answers_like_torchvision():
    assert set(model_names()) == set(torchvision.models.list_models(module=torchvision.models))
    enum = torchvision.models.get_model_weights("resnet50")
    assert weights_table()["resnet50"] == (enum.__name__, enum.DEFAULT.name,
                                           {w.name: w.url.rsplit("/", 1)[1] for w in enum})


def test_regenerating_script_checks_the_file():
    proc = subprocess.run([sys.executable, "scripts/torchvision_names.py", "--check"], cwd=REPO, capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "matches" in proc.stdout
