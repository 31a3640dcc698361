"""``data.source: shards``: a pack of tar shards (``hpcnn data pack``) read by sample index.

A pack is WebDataset-compatible tar files (``KEY.png`` + ``KEY.cls`` per sample), one set per
split, with an index per shard (byte offset, size and label of every image) and a top-level
``index.json``. Reading by index keeps what every other source has (the same splits, the
deterministic RankBatchSampler, bitwise mid-epoch resume) while the file system sees one open
per shard per process instead of one per image: each process keeps a descriptor per shard it
touched and reads with ``os.pread`` (no shared file position, so forked workers may share one).
"""
from __future__ import annotations

import io
import json
import logging
import os
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from ..errors import DatasetError
from .imagesets import crop_box

log = logging.getLogger("hpcnn.data")

FORMAT = "hpcnn-shards/1"
INDEX = "index.json"
SPLITS = ("train", "val", "test")
MAX_OPEN = 256  # shard descriptors one process keeps (a pack of 256 MB shards: 64 GB before any is reopened)


def read_manifest(root: str | os.PathLike) -> dict:
    """The pack's ``index.json``; a missing or foreign one fails naming the command that writes it."""
    path = Path(root).expanduser() / INDEX
    try:
        manifest = json.loads(path.read_text())
    except FileNotFoundError:
        raise DatasetError(f"no shard pack here: {path} does not exist", "data.root",
                           "write one with `hpcnn data pack SOURCE --out DIR`") from None
    except (OSError, ValueError) as err:
        raise DatasetError(f"cannot read the pack index {path}: {err}", "data.root") from None
    if manifest.get("format") != FORMAT:
        raise DatasetError(f"{path} is not an hpcnn shard pack (format {manifest.get('format')!r}, "
                           f"expected {FORMAT!r})", "data.root", "re-pack with `hpcnn data pack`")
    return manifest


def pack_files(manifest: dict) -> list[str]:
    """Every file of a pack relative to its root (shards and their indexes), the manifest last."""
    names = []
    for split in manifest["splits"].values():
        for shard in split["shards"]:
            names += [shard["name"], shard["index"]]
    return names + [INDEX]


class ShardIndex:
    """Where each sample of one split lies: shard number, byte offset and size of its image, label, key."""

    def __init__(self, root: Path, shards: list[dict]):
        self.root, self.names = root, [s["name"] for s in shards]
        shard, offset, size, label, keys = [], [], [], [], []
        for number, entry in enumerate(shards):
            rows = json.loads((root / entry["index"]).read_text())["samples"]
            shard += [number] * len(rows)
            keys += [r[0] for r in rows]
            offset += [r[1] for r in rows]
            size += [r[2] for r in rows]
            label += [r[3] for r in rows]
        self.shard = np.asarray(shard, dtype=np.int32)
        self.offset = np.asarray(offset, dtype=np.int64)
        self.size = np.asarray(size, dtype=np.int64)
        self.labels = np.asarray(label, dtype=np.int64)
        self.keys = keys


class ShardImageSet:
    """One split of a pack; ``dataset[i]`` is ``(uint8 CxHxW, label)``, or None for a corrupt sample."""

    def __init__(self, index: ShardIndex, rows: np.ndarray, size: int, channels: int, on_corrupt: str = "skip",
                 crop: float | None = None):
        self.index, self.rows = index, np.asarray(rows, dtype=np.int64)
        self.labels = torch.as_tensor(index.labels[self.rows], dtype=torch.int64)
        self.size, self.channels, self.on_corrupt, self.crop = size, channels, on_corrupt, crop
        self._fds: dict[int, int] = {}

    def __getstate__(self):  # descriptors do not travel to spawned workers: each opens its own
        state = dict(self.__dict__)
        state["_fds"] = {}
        return state

    def __del__(self):
        for fd in getattr(self, "_fds", {}).values():
            try:
                os.close(fd)
            except OSError:
                pass

    def __len__(self) -> int:
        return len(self.rows)

    def name(self, i: int) -> str:
        row = self.rows[i]
        return f"{self.index.root / self.index.names[self.index.shard[row]]}:{self.index.keys[row]}"

    def read_bytes(self, i: int) -> bytes:
        row = int(self.rows[i])
        number = int(self.index.shard[row])
        fd = self._fds.get(number)
        if fd is None:
            if len(self._fds) >= MAX_OPEN:  # stay far below the usual 1024 descriptors: close the oldest
                os.close(self._fds.pop(next(iter(self._fds))))
            fd = self._fds[number] = os.open(self.index.root / self.index.names[number], os.O_RDONLY)
        size = int(self.index.size[row])
        data = os.pread(fd, size, int(self.index.offset[row]))
        if len(data) != size:
            raise OSError(f"shard truncated: read {len(data)} of {size} bytes")
        return data

    def load(self, i: int) -> torch.Tensor:
        return decode_image(self.read_bytes(i), self.size, self.channels, self.crop)

    def __getitem__(self, i: int):
        try:
            return self.load(i), int(self.labels[i])
        except Exception as err:  # PIL raises many types for bad bytes
            if self.on_corrupt == "fail":
                raise DatasetError(f"corrupt or unreadable image: {err}", self.name(i),
                                   "re-pack the data set, or set data.on_corrupt: skip") from None
            log.warning("skipping unreadable image %s (%s)", self.name(i), err)
            return None

    def subset(self, idx: Sequence[int]) -> "ShardImageSet":
        return ShardImageSet(self.index, self.rows[np.asarray(idx, dtype=np.int64)], self.size, self.channels,
                             self.on_corrupt, self.crop)

    def stats_sample(self, limit: int = 500) -> torch.Tensor:
        step = max(1, len(self) // limit)
        items = [self[i] for i in range(0, len(self), step)][:limit]
        return torch.stack([x for x, _ in (it for it in items if it is not None)])


def decode_image(data: bytes, size: int, channels: int, crop: float | None) -> torch.Tensor:
    """Encoded image bytes -> uint8 CxHxW at ``size``: the same geometry as a folder's files."""
    from PIL import Image

    with Image.open(io.BytesIO(data)) as im:
        im = im.convert("RGB" if channels == 3 else "L")
        if crop is not None:
            h, w, box = crop_box(im.size[1], im.size[0], size, crop)
            im = im.resize((w, h), Image.BILINEAR).crop(box)
        elif im.size != (size, size):
            im = im.resize((size, size), Image.BILINEAR)
        arr = np.asarray(im, dtype=np.uint8)
    x = torch.from_numpy(arr.copy())
    return x.unsqueeze(0) if x.ndim == 2 else x.permute(2, 0, 1).contiguous()


def load_shard_sets(cfg) -> tuple:
    """(train, val, test, classes, skipped) of a pack: exactly the splits it was written with.

    ``data.split_seed`` and the fractions do not apply; ``sources.load_splits`` wraps this in Splits.
    """
    root = Path(cfg.root or "").expanduser()
    manifest = read_manifest(root)
    sets = {}
    for split in SPLITS:
        entry = manifest["splits"].get(split)
        if not entry or not entry["count"]:
            continue
        index = ShardIndex(root, entry["shards"])
        sets[split] = ShardImageSet(index, np.arange(len(index.labels)), cfg.image_size, cfg.channels,
                                    cfg.on_corrupt, cfg.center_crop)
    if "train" not in sets or "val" not in sets:
        raise DatasetError(f"the pack {root} lacks a train or val split (has {', '.join(sets) or 'none'})",
                           "data.root", "pack a source that has train and val splits")
    return sets["train"], sets["val"], sets.get("test"), list(manifest["classes"]), list(manifest.get("skipped", []))


__all__ = ["FORMAT", "INDEX", "ShardImageSet", "decode_image", "load_shard_sets", "pack_files", "read_manifest"]
