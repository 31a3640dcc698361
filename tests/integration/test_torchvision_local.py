"""torchvision data sets are read from a local root (never downloaded): an MNIST in its on-disk format."""
from __future__ import annotations

import json
import struct

import numpy as np

from tests.helpers import TINY, run_hpcnn


def write_idx(path, array: np.ndarray):
    magic = {1: 0x0801, 3: 0x0803}[array.ndim]
    with open(path, "wb") as f:
        f.write(struct.pack(">I", magic) + b"".join(struct.pack(">I", d) for d in array.shape))
        f.write(array.astype(np.uint8).tobytes())


def fake_mnist(root, n_train=300, n_test=100):
    raw = root / "MNIST" / "raw"
    raw.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        labels = np.arange(n) % 10
        images = rng.integers(0, 40, (n, 28, 28))
        for i, lab in enumerate(labels):  # a bright bar whose position encodes the digit
            images[i, 2 + 2 * lab: 4 + 2 * lab, 4:24] = 255
        write_idx(raw / f"{prefix}-images-idx3-ubyte", images)
        write_idx(raw / f"{prefix}-labels-idx1-ubyte", labels)


def test_mnist_from_local_root(tmp_path):
    fake_mnist(tmp_path / "tv")
    run_dir = tmp_path / "run"
    proc = run_hpcnn("train", *TINY, "data.source=torchvision", "data.name=MNIST", f"data.root={tmp_path / 'tv'}",
                     "train.epochs=3", "train.batch_size=32", f"--run-dir={run_dir}", timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["classes"][0].startswith("0") and len(summary["classes"]) == 10
    assert summary["metrics"]["test"]["n"] == 100
    assert summary["metrics"]["val"]["accuracy"] > 0.5
