"""Indexable image sets that yield ``(uint8 CxHxW tensor, label)``.

Decoding and resizing happen here (in DataLoader workers for files); augmentation and
normalisation happen later, batch-wise on the training device (see ``augment.py``), so
the same code path serves in-memory tensors and folders of JPEGs.
"""
from __future__ import annotations

import logging
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

    if crop is None and tuple(x.shape[-2:]) == (size, size):
        return x
    whole = (size, size, (0, 0, size, size))  # no crop: the whole image to size x size
    h, w, (left, top, right, bottom) = whole if crop is None else crop_box(x.shape[-2], x.shape[-1], size, crop)
    y = F.interpolate(x.float(), size=(h, w), mode="bilinear", antialias=True, align_corners=False)
    return y[..., top:bottom, left:right].round().clamp(0, 255).to(torch.uint8).contiguous()


CHUNK_BYTES = 16 << 20  # float working memory of one resize chunk (its copies add a few times this)


def _empty(shape) -> torch.Tensor:
    return torch.empty(shape, dtype=torch.uint8)


def _chunks(src, step: int):
    """(lo, uint8 block) pairs; an h5py data set is read into one reused buffer (no allocation per block)."""
    n = len(src)
    if not hasattr(src, "read_direct"):
        for lo in range(0, n, step):
            yield lo, np.ascontiguousarray(src[lo:lo + step])
        return
    buf = np.empty((min(step, n), *src.shape[1:]), dtype=src.dtype)
    for lo in range(0, n, step):
        m = min(step, n - lo)
        src.read_direct(buf, np.s_[lo:lo + m], np.s_[0:m])
        yield lo, buf[:m]


def images_to_uint8(src, size: int, channels: int, crop: float | None = None, alloc=_empty) -> torch.Tensor:
    """(N,H,W[,C]) uint8 images (a numpy array or an h5py data set) -> (N,C,size,size) uint8.

    A chunk at a time, written straight into ``alloc(shape)`` (private memory, or a node's shared
    file): peak memory is the result plus a few chunks, never a float copy of the whole set.
    """
    n = len(src)
    pixels = int(np.prod(src.shape[1:])) if n else 1
    out = None
    for lo, block in _chunks(src, max(1, CHUNK_BYTES // (4 * pixels))):
        x = torch.from_numpy(block)
        x = (x.unsqueeze(-1) if x.ndim == 3 else x).permute(0, 3, 1, 2)
        if crop is not None or tuple(x.shape[-2:]) != (size, size):
            x = resize_uint8(x.contiguous(), size, crop)
        y = to_channels(x, channels)
        if out is None:
            out = alloc((n, *y.shape[1:]))
        out[lo:lo + len(y)] = y
    return out if out is not None else alloc((0, channels, size, size))


class TensorImageSet:
    """Images held in memory as one uint8 tensor; batched fetch via ``__getitems__``.

    A subset is a view (``index`` into the shared tensor), not a copy: the train/val/test splits of
    one in-memory source share its single tensor, which may be one mapping for a whole node.
    """

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, index: torch.Tensor | None = None):
        if images.dtype != torch.uint8 or images.ndim != 4:
            raise DatasetError(f"expected uint8 (N,C,H,W) images, got {images.dtype} {tuple(images.shape)}")
        self.base = images.contiguous()  # itself when it already is
        self.index = index
        self.labels = torch.as_tensor(labels, dtype=torch.int64)  # a tensor, array or list

    @classmethod
    def from_numpy_hwc(cls, images, labels, size: int, channels: int,
                       crop: float | None = None, alloc=_empty) -> "TensorImageSet":
        return cls(images_to_uint8(images, size, channels, crop, alloc), labels)

    @property
    def images(self) -> torch.Tensor:
        """All images of this set (N,C,H,W); for a view, a private copy of its rows."""
        return self.base if self.index is None else self.base[self.index]

    def materialize(self) -> "TensorImageSet":
        """A set owning a private copy of its images (for painting into them, e.g. ``data.marker``)."""
        return TensorImageSet(self.images.clone() if self.index is None else self.images, self.labels)

    def _rows(self, idx) -> torch.Tensor:
        index = torch.as_tensor(idx, dtype=torch.int64)
        return index if self.index is None else self.index[index]

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int):
        return self.base[int(self._rows(i))], int(self.labels[i])

    def __getitems__(self, idx: Sequence[int]):
        return self.base[self._rows(idx)], self.labels[torch.as_tensor(idx, dtype=torch.int64)]

    def subset(self, idx) -> "TensorImageSet":
        index = torch.as_tensor(idx, dtype=torch.int64)
        return TensorImageSet(self.base, self.labels[index], self._rows(index))

    STATS_LIMIT = 2000

    def stats_sample(self, limit: int = STATS_LIMIT) -> torch.Tensor:
        return self.base[self._rows(range(min(limit, len(self))))]

    def stats_chunks(self, limit: int = STATS_LIMIT, chunk: int = 128):
        """The same sample a chunk of images at a time (never one copy of it all)."""
        rows = self._rows(range(min(limit, len(self))))
        for lo in range(0, len(rows), chunk):
            yield self.base[rows[lo:lo + chunk]]


def decode_file(source, size: int, channels: int, crop: float | None) -> torch.Tensor:
    """An encoded image (a path or a binary file object) -> uint8 CxHxW at ``size`` via PIL: the whole image
    resized, or with ``crop`` torchvision's shorter-side resize and centre crop (``crop_box``)."""
    from PIL import Image

    with Image.open(source) as im:
        im = im.convert("RGB" if channels == 3 else "L")
        if crop is not None:
            h, w, box = crop_box(im.size[1], im.size[0], size, crop)
            im = im.resize((w, h), Image.BILINEAR).crop(box)
        elif im.size != (size, size):
            im = im.resize((size, size), Image.BILINEAR)
        arr = np.asarray(im, dtype=np.uint8)
    x = torch.from_numpy(arr.copy())
    return x.unsqueeze(0) if x.ndim == 2 else x.permute(2, 0, 1).contiguous()


class DecodedOnAccess:
    """What the sets that decode an image when it is fetched share (``load(i)``, ``name(i)``, ``labels``,
    ``on_corrupt``): a corrupt image yields ``None`` (collate drops it), or fails with ``on_corrupt: fail``."""

    repair = "remove the file"  # the first half of the hint a corrupt image fails with

    def __getitem__(self, i: int):
        try:
            return self.load(i), int(self.labels[i])
        except Exception as err:  # PIL raises many types for bad files
            if self.on_corrupt == "fail":
                raise DatasetError(f"corrupt or unreadable image: {err}", self.name(i),
                                   f"{self.repair}, or set data.on_corrupt: skip") from None
            log.warning("skipping unreadable image %s (%s)", self.name(i), err)
            return None

    def stats_sample(self, limit: int = 500) -> torch.Tensor:
        step = max(1, len(self) // limit)
        items = [self[i] for i in range(0, len(self), step)][:limit]
        return torch.stack([it[0] for it in items if it is not None])


class FileImageSet(DecodedOnAccess):
    """Image files decoded with PIL on access."""

    def __init__(self, paths: Sequence[str], labels: Sequence[int], size: int, channels: int,
                 on_corrupt: str = "skip", crop: float | None = None):
        self.paths = [str(p) for p in paths]
        self.labels = torch.as_tensor(list(labels), dtype=torch.int64)
        self.size, self.channels, self.on_corrupt, self.crop = size, channels, on_corrupt, crop

    def __len__(self) -> int:
        return len(self.paths)

    def name(self, i: int) -> str:
        return self.paths[i]

    def load(self, i: int) -> torch.Tensor:
        return decode_file(self.paths[i], self.size, self.channels, self.crop)

    def subset(self, idx) -> "FileImageSet":
        return FileImageSet([self.paths[i] for i in idx], [int(self.labels[i]) for i in idx], self.size,
                            self.channels, self.on_corrupt, self.crop)


def collate(batch):
    """Batched fetch passes through; per-item lists are stacked, dropping corrupt (None) items."""
    if isinstance(batch, tuple) and len(batch) == 2 and isinstance(batch[0], torch.Tensor):
        return batch
    items = [b for b in batch if b is not None]
    if not items:
        return torch.empty(0, dtype=torch.uint8), torch.empty(0, dtype=torch.int64)
    return torch.stack([x for x, _ in items]), torch.tensor([y for _, y in items], dtype=torch.int64)


def check_root(root: str | None, what: str) -> Path:
    path = Path(root or "").expanduser()
    if not root or not path.exists():
        raise DatasetError(f"{what} not found: {path}", "data.root")
    return path
