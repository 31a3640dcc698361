"""Indexable image sets that yield ``(uint8 CxHxW tensor, label)``.

Decoding and resizing happen here (in DataLoader workers for files); augmentation and
normalisation happen later, batch-wise on the training device (see ``augment.py``), so
the same code path serves in-memory tensors and folders of JPEGs.
"""
from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from ..errors import DatasetError

log = logging.getLogger("hpcnn.data")


def to_channels(x: torch.Tensor, channels: int) -> torch.Tensor:
    """(N,C,H,W) or (C,H,W) uint8 -> the requested channel count (gray <-> RGB)."""
    c = x.shape[-3]
    if c == channels:
        return x
    if channels == 3 and c == 1:
        return x.expand(*x.shape[:-3], 3, *x.shape[-2:]).contiguous()
    if channels == 1 and c == 3:
        w = torch.tensor([0.299, 0.587, 0.114]).view(3, 1, 1)
        return (x.float() * w).sum(-3, keepdim=True).round().clamp(0, 255).to(torch.uint8)
    raise DatasetError(f"cannot convert {c}-channel images to {channels} channels")


def crop_box(height: int, width: int, size: int, crop: float) -> tuple[int, int, tuple[int, int, int, int]]:
    """torchvision's eval geometry: the shorter side scaled to size/crop, then the centre size x size.

    Returns the scaled (height, width) and the crop box (left, top, right, bottom).
    """
    short = max(size, int(round(size / crop)))
    scale = short / min(height, width)
    h, w = max(size, int(round(height * scale))), max(size, int(round(width * scale)))
    top, left = (h - size) // 2, (w - size) // 2
    return h, w, (left, top, left + size, top + size)


def resize_uint8(x: torch.Tensor, size: int, crop: float | None = None) -> torch.Tensor:
    """Antialiased resize of (N,C,H,W) uint8 to size x size; with ``crop``, resize then centre-crop."""
    import torch.nn.functional as F

    if crop is None:
        if x.shape[-1] == size and x.shape[-2] == size:
            return x
        y = F.interpolate(x.float(), size=(size, size), mode="bilinear", antialias=True, align_corners=False)
        return y.round().clamp(0, 255).to(torch.uint8)
    h, w, (left, top, right, bottom) = crop_box(x.shape[-2], x.shape[-1], size, crop)
    y = F.interpolate(x.float(), size=(h, w), mode="bilinear", antialias=True, align_corners=False)
    return y[..., top:bottom, left:right].round().clamp(0, 255).to(torch.uint8).contiguous()


class TensorImageSet:
    """Images held in memory as one uint8 tensor; batched fetch via ``__getitems__``."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor):
        if images.dtype != torch.uint8 or images.ndim != 4:
            raise DatasetError(f"expected uint8 (N,C,H,W) images, got {images.dtype} {tuple(images.shape)}")
        self.images = images.contiguous()
        self.labels = labels.to(torch.int64)

    @classmethod
    def from_numpy_hwc(cls, images: np.ndarray, labels, size: int, channels: int,
                       crop: float | None = None) -> "TensorImageSet":
        x = torch.from_numpy(np.ascontiguousarray(images))
        if x.ndim == 3:
            x = x.unsqueeze(-1)
        x = x.permute(0, 3, 1, 2).contiguous()
        x = to_channels(resize_uint8(x, size, crop), channels)
        return cls(x, torch.as_tensor(np.asarray(labels), dtype=torch.int64))

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int):
        return self.images[i], int(self.labels[i])

    def __getitems__(self, idx: Sequence[int]):
        index = torch.as_tensor(idx, dtype=torch.int64)
        return self.images[index], self.labels[index]

    def subset(self, idx) -> "TensorImageSet":
        index = torch.as_tensor(idx, dtype=torch.int64)
        return TensorImageSet(self.images[index], self.labels[index])

    def stats_sample(self, limit: int = 2000) -> torch.Tensor:
        return self.images[:limit]


class FileImageSet:
    """Image files decoded with PIL on access; a corrupt file yields ``None`` (collate drops it)."""

    def __init__(self, paths: Sequence[str], labels: Sequence[int], size: int, channels: int,
                 on_corrupt: str = "skip", crop: float | None = None):
        self.paths = [str(p) for p in paths]
        self.labels = torch.as_tensor(list(labels), dtype=torch.int64)
        self.size, self.channels, self.on_corrupt, self.crop = size, channels, on_corrupt, crop

    def __len__(self) -> int:
        return len(self.paths)

    def load(self, i: int) -> torch.Tensor:
        from PIL import Image

        with Image.open(self.paths[i]) as im:
            im = im.convert("RGB" if self.channels == 3 else "L")
            if self.crop is not None:
                h, w, box = crop_box(im.size[1], im.size[0], self.size, self.crop)
                im = im.resize((w, h), Image.BILINEAR).crop(box)
            elif im.size != (self.size, self.size):
                im = im.resize((self.size, self.size), Image.BILINEAR)
            arr = np.asarray(im, dtype=np.uint8)
        x = torch.from_numpy(arr.copy())
        return x.unsqueeze(0) if x.ndim == 2 else x.permute(2, 0, 1).contiguous()

    def __getitem__(self, i: int):
        try:
            return self.load(i), int(self.labels[i])
        except Exception as err:  # PIL raises many types for bad files
            if self.on_corrupt == "fail":
                raise DatasetError(f"corrupt or unreadable image: {err}", self.paths[i],
                                   "remove the file, or set data.on_corrupt: skip") from None
            log.warning("skipping unreadable image %s (%s)", self.paths[i], err)
            return None

    def subset(self, idx) -> "FileImageSet":
        return FileImageSet([self.paths[i] for i in idx], [int(self.labels[i]) for i in idx], self.size,
                            self.channels, self.on_corrupt, self.crop)

    def stats_sample(self, limit: int = 500) -> torch.Tensor:
        step = max(1, len(self) // limit)
        items = [self[i] for i in range(0, len(self), step)][:limit]
        return torch.stack([x for x, _ in (it for it in items if it is not None)])


def collate(batch):
    """Batched fetch passes through; per-item lists are stacked, dropping corrupt (None) items."""
    if isinstance(batch, tuple) and len(batch) == 2 and isinstance(batch[0], torch.Tensor):
        return batch
    items = [b for b in batch if b is not None]
    if not items:
        return torch.empty(0, dtype=torch.uint8), torch.empty(0, dtype=torch.int64)
    return torch.stack([x for x, _ in items]), torch.tensor([y for _, y in items], dtype=torch.int64)


def verify_files(paths: Sequence[str], on_corrupt: str) -> tuple[list[int], list[str]]:
    """Cheap header check of every file before training starts: keep indices, skipped paths."""
    from PIL import Image

    keep, skipped = [], []
    for i, p in enumerate(paths):
        try:
            if os.path.islink(p) and not os.path.exists(p):
                raise FileNotFoundError(f"dangling symlink to {os.readlink(p)}")
            with Image.open(p) as im:
                im.verify()
            keep.append(i)
        except Exception as err:
            if on_corrupt == "fail":
                raise DatasetError(f"corrupt or unreadable image: {err}", str(p),
                                   "remove the file, or set data.on_corrupt: skip") from None
            log.warning("skipping unreadable image %s (%s)", p, err)
            skipped.append(str(p))
    return keep, skipped


def check_root(root: str | None, what: str) -> Path:
    path = Path(root or "").expanduser()
    if not root or not path.exists():
        raise DatasetError(f"{what} not found: {path}", "data.root")
    return path
