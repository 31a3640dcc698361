"""Input geometry: torchvision's eval crop, for in-memory and file images; the weights choose it."""
from __future__ import annotations

import numpy as np
import torch
from PIL import Image

from hpcnn.config import load_job
from hpcnn.data.imagesets import FileImageSet, TensorImageSet, crop_box, resize_uint8


def marked(height=120, width=200):
    """A dark image with a bright centre square and a bright left border: the crop must keep one, drop the other."""
    x = np.zeros((height, width, 3), dtype=np.uint8)
    x[height // 2 - 10:height // 2 + 10, width // 2 - 10:width // 2 + 10] = 255
    x[:, :8] = 255
    return x


def test_crop_box_is_torchvisions_resize_then_centre_crop():
    h, w, box = crop_box(480, 640, 224, 224 / 256)
    assert (h, w) == (256, 341) and box == (58, 16, 282, 240)


def test_center_crop_keeps_the_centre_and_drops_the_border(tmp_path):
    img = marked()
    squashed = resize_uint8(torch.from_numpy(img).permute(2, 0, 1)[None], 32)[0]
    cropped = resize_uint8(torch.from_numpy(img).permute(2, 0, 1)[None], 32, crop=0.875)[0]
    assert squashed[:, :, 0].float().mean() > 100          # the border survives a squash
    assert cropped[:, :, 0].float().mean() < 20            # and is cut by the centre crop
    assert cropped[:, 16, 16].min() > 200                   # the centre stays
    Image.fromarray(img).save(tmp_path / "a.png")
    from_file = FileImageSet([tmp_path / "a.png"], [0], 32, 3, crop=0.875).load(0)
    in_memory = TensorImageSet.from_numpy_hwc(img[None], [0], 32, 3, crop=0.875).images[0]
    assert from_file.shape == in_memory.shape == (3, 32, 32)
    assert (from_file.float() - in_memory.float()).abs().mean() < 12   # PIL vs torch resampling, same geometry


def test_torchvision_weights_bring_their_geometry_and_statistics(monkeypatch):
    from hpcnn.train import inputs

    seen = {}
    monkeypatch.setattr(inputs, "load_splits", lambda data: seen.setdefault("data", data) and _splits())
    cfg = load_job(None, ["model.name=resnet18", "model.weights=IMAGENET1K_V1", "data.image_size=224"])
    splits, normalize = inputs.job_inputs(cfg, announce=False)
    assert seen["data"].center_crop == 224 / 256
    assert torch.allclose(normalize.mean.flatten(), torch.tensor([0.485, 0.456, 0.406]))
    cfg = load_job(None, ["model.name=resnet18", "model.weights=IMAGENET1K_V1", "data.center_crop=1.0"])
    seen.clear()
    inputs.job_inputs(cfg, announce=False)
    assert seen["data"].center_crop == 1.0  # an explicit choice wins


def _splits():
    from hpcnn.data.sources import Splits

    images = TensorImageSet(torch.zeros(4, 3, 8, 8, dtype=torch.uint8), torch.tensor([0, 1, 0, 1]))
    return Splits(images, images, None, ["a", "b"])
