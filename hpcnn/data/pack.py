"""``hpcnn data pack``: any data source as tar shards in the WebDataset layout, split by split.

Each sample is two tar members, ``KEY.<ext>`` (the encoded image: a folder's file bytes as they
are, in-memory images as PNG) and ``KEY.cls`` (the label as decimal text), so the ``webdataset``
library reads a pack as it is. Next to each shard, ``NAME.idx.json`` holds every image's byte
offset, size and label, which lets hpcnn read sample i with one ``pread``. ``index.json`` (written
last) names the shards of each split with their sizes and SHA-256, the classes and the skipped files.
Every file is written atomically (temporary file + rename): an interrupted pack has no index.json.
"""
from __future__ import annotations

import hashlib
import io
import re
import tarfile
import time
from pathlib import Path
from typing import Iterator

from ..errors import ConfigError, DatasetError
from ..files import atomic_write, atomic_write_json
from .shards import FORMAT, INDEX, SPLITS

_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([KMGT]?)(i?)B?\s*$", re.IGNORECASE)


def parse_size(text: str) -> int:
    """'256MB' -> 256_000_000, '1GiB' -> 2**30, '4096' -> 4096 bytes."""
    m = _SIZE.match(str(text))
    if not m or float(m.group(1)) <= 0:
        raise ConfigError(f"not a size: {text!r}", "--shard-size", "write e.g. 256MB, 1GB or 64MiB")
    power = " KMGT".index(m.group(2).upper() or " ")
    return int(float(m.group(1)) * (1024 if m.group(3) else 1000) ** power)


class _HashingFile:
    """A write-only file that also hashes and counts what goes through it (tarfile needs write and tell)."""

    def __init__(self, f):
        self.f, self.sha, self.count = f, hashlib.sha256(), 0

    def write(self, data) -> int:
        self.f.write(data)
        self.sha.update(data)
        self.count += len(data)
        return len(data)

    def tell(self) -> int:
        return self.count


def _add(tar: tarfile.TarFile, name: str, data: bytes) -> int:
    """Append one member; return where its data starts in the archive."""
    info = tarfile.TarInfo(name)
    info.size, info.mode, info.mtime = len(data), 0o644, 0  # mtime 0: the same input packs to the same bytes
    start = tar.offset + len(info.tobuf(tar.format, tar.encoding, tar.errors))
    tar.addfile(info, io.BytesIO(data))
    return start


def _encode_png(image) -> bytes:
    """A uint8 CxHxW tensor as PNG bytes."""
    from PIL import Image

    arr = image.numpy()
    arr = arr[0] if arr.shape[0] == 1 else arr.transpose(1, 2, 0)
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="PNG")
    return buf.getvalue()


def samples(dataset, split: str) -> Iterator[tuple[str, str, bytes, int]]:
    """(key, extension, encoded image, label) of every sample: file bytes untouched, tensors as PNG."""
    paths = getattr(dataset, "paths", None)
    labels = [int(v) for v in dataset.labels]
    for i, label in enumerate(labels):
        key = f"{split}_{i:08d}"
        if paths is not None:
            path = Path(paths[i])
            ext = path.suffix.lower().lstrip(".") or "img"
            yield key, ext, path.read_bytes(), label
        else:
            item = dataset[i]
            if item is not None:
                yield key, "png", _encode_png(item[0]), label


def _write_shard(path: Path, stream, first, limit: int) -> tuple[list, str, int, object]:
    """Write samples from ``stream`` (``first`` already drawn) until the shard passes ``limit`` bytes.

    Returns the index rows, SHA-256, size, and the next undrawn sample (None at the end).
    """
    rows, out = [], None

    def write(f):
        nonlocal first, out
        out = _HashingFile(f)
        with tarfile.open(fileobj=out, mode="w", format=tarfile.USTAR_FORMAT) as tar:
            while first is not None and (not rows or out.count < limit):
                key, ext, data, label = first
                rows.append([key, _add(tar, f"{key}.{ext}", data), len(data), label])
                _add(tar, f"{key}.cls", str(label).encode())
                first = next(stream, None)

    atomic_write(path, write)
    return rows, out.sha.hexdigest(), out.count, first


def write_split(out: Path, split: str, dataset, shard_bytes: int) -> dict:
    """One split as shards ``SPLIT-000000.tar`` (+ ``.idx.json``); its manifest entry."""
    stream = samples(dataset, split)
    first, shards = next(stream, None), []
    while first is not None:
        name = f"{split}-{len(shards):06d}.tar"
        rows, sha, size, first = _write_shard(out / name, stream, first, shard_bytes)
        index = name.replace(".tar", ".idx.json")
        atomic_write_json(out / index, {"shard": name, "fields": ["key", "offset", "size", "label"],
                                        "samples": rows})
        shards.append({"name": name, "index": index, "samples": len(rows), "bytes": size, "sha256": sha})
    return {"count": sum(s["samples"] for s in shards), "shards": shards}


def pack(splits, out: str | Path, shard_bytes: int, source: dict) -> dict:
    """Write ``splits`` (a ``sources.Splits``) as a pack in ``out``; returns the manifest."""
    out = Path(out).expanduser()
    if (out / INDEX).exists():
        raise DatasetError(f"{out} already holds a pack ({INDEX})", "--out",
                           "choose another directory, or remove that pack first")
    out.mkdir(parents=True, exist_ok=True)
    manifest = {"format": FORMAT, "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "source": source,
                "classes": list(splits.classes), "skipped": list(splits.skipped_files), "shard_bytes": shard_bytes,
                "splits": {name: write_split(out, name, getattr(splits, name), shard_bytes)
                           for name in SPLITS if getattr(splits, name) is not None}}
    atomic_write_json(out / INDEX, manifest)
    return manifest


__all__ = ["pack", "parse_size", "samples", "write_split"]
