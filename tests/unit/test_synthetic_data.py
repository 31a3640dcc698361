"""The embedded galaxies: deterministic, disjoint splits, balanced, not solvable from colour/brightness."""
from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from hpcnn.data import synthetic


def test_deterministic_and_shaped():
    a, la = synthetic.generate(64, size=32, seed=3, split="train")
    b, lb = synthetic.generate(64, size=32, seed=3, split="train")
    assert a.shape == (64, 32, 32, 3) and a.dtype == np.uint8 and la.dtype == np.int64
    assert np.array_equal(a, b) and np.array_equal(la, lb)
    c, _ = synthetic.generate(64, size=32, seed=4, split="train")
    assert not np.array_equal(a, c)


def test_splits_share_no_image_and_classes_are_balanced():
    seen = {}
    for split in ("train", "val", "test"):
        x, y = synthetic.generate(160, size=24, seed=0, split=split)
        assert np.bincount(y, minlength=len(synthetic.CLASSES)).tolist() == [20] * 8
        seen[split] = {img.tobytes() for img in x}
    assert not (seen["train"] & seen["val"] or seen["train"] & seen["test"] or seen["val"] & seen["test"])


def test_colour_and_brightness_alone_do_not_solve_it():
    from sklearn.linear_model import LogisticRegression

    def features(x):
        flat = x.reshape(len(x), -1, 3).astype(float)
        return np.concatenate([flat.mean(1), flat.std(1)], 1)

    x, y = synthetic.generate(1200, size=32, seed=0, split="train")
    xv, yv = synthetic.generate(600, size=32, seed=0, split="val")
    acc = LogisticRegression(max_iter=3000).fit(features(x), y).score(features(xv), yv)
    assert acc < 0.35, f"colour/brightness statistics reach {acc:.2f} (chance 0.125): the task leaks"


def test_write_image_folder(tmp_path):
    counts = synthetic.write_image_folder(tmp_path, 40, size=24, fmt="png",
                                          split_fractions={"train": 0.5, "val": 0.25, "test": 0.25})
    assert counts["splits"] == {"train": 20, "val": 10, "test": 10}
    files = sorted((tmp_path / "train").rglob("*.png"))
    assert len(files) == 20 and {f.parent.name for f in files} <= set(synthetic.CLASSES)
    with Image.open(files[0]) as im:
        assert im.size == (24, 24) and im.mode == "RGB"


def test_bad_arguments():
    with pytest.raises(ValueError, match="split"):
        synthetic.generate(1, split="validation")
    with pytest.raises(ValueError, match="size"):
        synthetic.generate(1, size=8)
