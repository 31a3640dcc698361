"""The shortcut ("tank detector") lesson: a spurious marker that gives the class away.

With ``data.marker.enabled`` a ``size`` x ``size`` square is painted into the top-left corner of
every image. In the training and validation splits its colour names the class (one colour per
class); in the test split it is, by default, the colour of a random class, drawn independently
of the label. A network that learned the marker instead of the image scores high on validation
and collapses on test, and Grad-CAM puts its heat on the corner (docs/lessons.md).

The region is exact (``marker_mask``), so a test can measure how much heat lies inside it. The
marker is painted on the final, resized images, before normalisation and augmentation: flips,
rotations and crops move it (the lesson's jobs do not augment).
"""
from __future__ import annotations

import colorsys

import numpy as np
import torch

from ..errors import DatasetError

SPLIT_STREAMS = {"train": 0, "val": 1, "test": 2}


def marker_mask(image_size: int, size: int) -> torch.Tensor:
    """(image_size, image_size) bool: True on the marker's pixels (the top-left size x size square)."""
    mask = torch.zeros(image_size, image_size, dtype=torch.bool)
    mask[:size, :size] = True
    return mask


def palette(classes: int, channels: int) -> torch.Tensor:
    """(classes, channels) uint8: fully saturated hues around the colour wheel, or evenly spaced greys."""
    if channels == 1:
        return torch.linspace(0, 255, classes).round().to(torch.uint8).view(classes, 1)
    rgb = [colorsys.hsv_to_rgb(k / classes, 1.0, 1.0) for k in range(classes)]
    return torch.tensor(np.round(np.asarray(rgb) * 255), dtype=torch.uint8)


def marker_classes(labels: torch.Tensor, classes: int, split: str, mode: str, seed: int) -> torch.Tensor | None:
    """Which class's colour each image gets: its own, or (test with mode random) a seeded random one."""
    if split != "test" or mode == "class":
        return labels
    if mode == "none":
        return None
    rng = np.random.default_rng([int(seed), 7919, SPLIT_STREAMS[split]])  # independent of the labels
    return torch.from_numpy(rng.integers(0, classes, len(labels))).to(torch.int64)


def paint(dataset, split: str, classes: int, cfg, seed: int):
    """Paint the marker into an in-memory image set (its uint8 tensor is modified in place)."""
    images = getattr(dataset, "images", None)
    if not isinstance(images, torch.Tensor):
        raise DatasetError("data.marker needs images held in memory", "data.marker.enabled",
                           "use data.source synthetic, digits, torchvision or hdf5 (not folder)")
    size = images.shape[-1]
    if cfg.size >= size:
        raise DatasetError(f"the marker ({cfg.size} px) does not fit in {size} px images", "data.marker.size",
                           f"use fewer than {size} pixels")
    which = marker_classes(dataset.labels, classes, split, cfg.test, seed)
    if which is not None and len(which):
        colours = palette(classes, images.shape[1])[which]
        images[:, :, :cfg.size, :cfg.size] = colours[:, :, None, None]
    return dataset


def add_markers(splits, cfg, seed: int):
    """``data.marker`` applied to every split of ``splits`` (a ``sources.Splits``)."""
    classes = len(splits.classes)
    for split in ("train", "val", "test"):
        dataset = getattr(splits, split)
        if dataset is not None:
            paint(dataset, split, classes, cfg, seed)
    return splits


__all__ = ["add_markers", "marker_classes", "marker_mask", "paint", "palette"]
