"""Constants and small helpers shared by the tests (import as ``tests.helpers``)."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PYTHON = sys.executable

# Small enough to train in a few seconds on one CPU core, real enough to learn something.
TINY = ["data.source=digits", "data.image_size=16", "data.channels=1", "model.channels=[8,16]",
        "train.epochs=2", "train.batch_size=64", "train.plots=false", "train.tensorboard=false",
        "train.log_every=5", "train.threads=1"]


def hpcnn_cmd(*args: str) -> list[str]:
    return [PYTHON, "-m", "hpcnn", *map(str, args)]


def run_hpcnn(*args: str, timeout: float = 300, env: dict | None = None, cwd=None) -> subprocess.CompletedProcess:
    """Run the CLI in a fresh process, as a user would; output captured as text."""
    full_env = {**os.environ, **(env or {})}
    return subprocess.run(hpcnn_cmd(*args), capture_output=True, text=True, timeout=timeout, env=full_env,
                          cwd=cwd or REPO)
