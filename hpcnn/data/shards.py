"""``data.source: shards``: a pack of tar shards (``hpcnn data pack``) read by sample index.

A pack is WebDataset-compatible tar files (``KEY.png`` + ``KEY.cls`` per sample), one set per
split, with an index per shard (byte offset, size and label of every image) and a top-level
``index.json``. Reading by index keeps what every other source has (the same splits, the
deterministic RankBatchSampler, bitwise mid-epoch resume) while the file system sees one open
per shard per process instead of one per image: each process keeps a descriptor per shard it
touched and reads with ``os.pread`` (no shared file position, so forked workers may share one).
"""
from __future__ import annotations

import contextlib
import io
import json
import os
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from ..errors import DatasetError
from .imagesets import DecodedOnAccess, decode_file

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
        # column by column, one shard's rows ([key, offset, size, label], pack.write_split) at a time: a pack of
        # millions of samples never holds every row's list at once
        shard, keys, columns = [], [], ([], [], [])
        for number, entry in enumerate(shards):
            rows = json.loads((root / entry["index"]).read_text())["samples"]
            shard += [number] * len(rows)
            keys += [r[0] for r in rows]
            for k, column in enumerate(columns, 1):
                column += [r[k] for r in rows]
        self.shard, self.keys = np.asarray(shard, dtype=np.int32), keys
        self.offset, self.size, self.labels = (np.asarray(column, dtype=np.int64) for column in columns)


class ShardImageSet(DecodedOnAccess):
    """One split of a pack; ``dataset[i]`` is ``(uint8 CxHxW, label)``, or None for a corrupt sample."""

    repair = "re-pack the data set"

    def __init__(self, index: ShardIndex, rows: np.ndarray, size: int, channels: int, on_corrupt: str = "skip",
                 crop: float | None = None):
        self.index, self.rows = index, np.asarray(rows, dtype=np.int64)
        self.labels = torch.as_tensor(index.labels[self.rows], dtype=torch.int64)
        self.size, self.channels, self.on_corrupt, self.crop = size, channels, on_corrupt, crop
        self._fds: dict[int, int] = {}

    def __getstate__(self):  # descriptors do not travel to spawned workers: each opens its own
        return {**self.__dict__, "_fds": {}}

    def __del__(self):
        for fd in getattr(self, "_fds", {}).values():
            with contextlib.suppress(OSError):
                os.close(fd)

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
        return decode_file(io.BytesIO(self.read_bytes(i)), self.size, self.channels, self.crop)

    def subset(self, idx: Sequence[int]) -> "ShardImageSet":
        return ShardImageSet(self.index, self.rows[np.asarray(idx, dtype=np.int64)], self.size, self.channels,
                             self.on_corrupt, self.crop)


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


__all__ = ["FORMAT", "INDEX", "ShardImageSet", "load_shard_sets", "pack_files", "read_manifest"]
