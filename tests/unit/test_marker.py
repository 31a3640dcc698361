"""data.marker (the shortcut lesson): the corner colour follows the class in train/val, is random on test."""
from __future__ import annotations

import pytest
import torch

from hpcnn.config import load_job
from hpcnn.data.marker import marker_mask, palette
from hpcnn.data.sources import load_splits
from hpcnn.data.synthetic import write_image_folder
from hpcnn.errors import ConfigError, DatasetError

SMALL = ["data.image_size=32", "data.n_train=256", "data.n_val=128", "data.n_test=512"]


def splits(*overrides):
    return load_splits(load_job(None, [*SMALL, *overrides]).data)


def corner_classes(dataset, size: int, channels: int = 3) -> torch.Tensor:
    """Which class's colour each image's corner shows (asserting the square is exactly one palette colour)."""
    corner = dataset.images[:, :, :size, :size]
    assert (corner == corner[:, :, :1, :1]).all()  # one flat colour over the whole square
    colours = palette(8, channels)
    match = (corner[:, :, 0, 0][:, None, :] == colours[None]).all(-1)
    assert (match.sum(1) == 1).all()
    return match.int().argmax(1)


def test_marker_follows_the_class_in_train_and_val_and_is_random_on_test():
    plain = splits()
    marked = splits("data.marker.enabled=true", "data.marker.size=6")
    mask = marker_mask(32, 6)
    assert mask.sum() == 36 and mask[:6, :6].all()
    for name in ("train", "val", "test"):
        a, b = getattr(plain, name), getattr(marked, name)
        assert torch.equal(a.labels, b.labels)
        assert torch.equal(a.images[:, :, ~mask], b.images[:, :, ~mask])  # nothing outside the square changes
    assert torch.equal(corner_classes(marked.train, 6), marked.train.labels)
    assert torch.equal(corner_classes(marked.val, 6), marked.val.labels)
    shown = corner_classes(marked.test, 6)
    agree = (shown == marked.test.labels).float().mean()
    assert 0.05 < agree < 0.22  # independent of the label: about 1/8
    assert len(shown.unique()) == 8
    again = splits("data.marker.enabled=true", "data.marker.size=6")
    assert torch.equal(again.test.images, marked.test.images)  # seeded by data.split_seed


def test_test_marker_modes_and_grey_images():
    same = splits("data.marker.enabled=true", "data.marker.test=class")
    assert torch.equal(corner_classes(same.test, 8), same.test.labels)
    none = splits("data.marker.enabled=true", "data.marker.test=none")
    assert torch.equal(none.test.images, splits().test.images)
    grey = splits("data.marker.enabled=true", "data.channels=1")
    assert torch.equal(corner_classes(grey.train, 8, channels=1), grey.train.labels)


def test_bad_marker_settings_fail_early(tmp_path):
    with pytest.raises(ConfigError, match="data.marker.test"):
        load_job(None, ["data.marker.test=sometimes"])
    with pytest.raises(ConfigError, match="data.marker.size"):
        load_job(None, ["data.marker.size=0"])
    with pytest.raises(DatasetError, match="does not fit"):
        splits("data.marker.enabled=true", "data.marker.size=32")
    write_image_folder(tmp_path / "files", n=16, size=16)
    with pytest.raises(DatasetError, match="in memory"):
        load_splits(load_job(None, ["data.source=folder", f"data.root={tmp_path / 'files'}",
                                    "data.marker.enabled=true"]).data)
