"""An image folder listed and verified once per job, and re-verified only where it changed.

A parallel file system's metadata servers are shared by everyone on the cluster: listing a tree
and opening every file in it on every rank costs (files x ranks) metadata operations before the
first step. Here one rank walks the tree with ``os.scandir`` (the directory entry says what is a
file; one ``stat`` per file gives the size and mtime that key the cache), verifies what the cache
does not vouch for, and returns a manifest: per split, its classes and every file's
(path, size, mtime, label, verdict). ``data.verify``: ``header`` opens each file and checks its
structure without decoding pixels (PIL ``verify``), ``full`` decodes it, ``none`` trusts the listing.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
from pathlib import Path

from ..errors import DatasetError
from ..files import atomic_write_text

log = logging.getLogger("hpcnn.data")

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp"}
CACHE_NAME = ".hpcnn-verified.json"
CACHE_VERSION = 1
MANIFEST_VERSION = 1


def walk_images(directory: str):
    """(entry, dangling link?) per image file under ``directory``, recursively; symlinked folders not followed."""
    with os.scandir(directory) as it:
        entries = list(it)
    for entry in entries:
        if entry.is_dir(follow_symlinks=False):
            yield from walk_images(entry.path)
        elif os.path.splitext(entry.name)[1].lower() in IMAGE_SUFFIXES:
            if entry.is_file():  # a regular file (a FIFO or socket never is)
                yield entry, False
            elif entry.is_symlink() and not os.path.exists(entry.path):
                yield entry, True


def scan_classes(folder: Path, with_stat: bool) -> tuple[list[str], list[list]]:
    """Class folders of ``folder`` and [path, size, mtime_ns, label, dangling] per image file."""
    with os.scandir(folder) as it:
        classes = sorted(e.name for e in it if e.is_dir() and not e.name.startswith("."))
    files = []
    for label, name in enumerate(classes):
        # the order sorted(pathlib.Path) gives: part by part
        for entry, dangling in sorted(walk_images(str(folder / name)), key=lambda item: item[0].path.split(os.sep)):
            size, mtime = -1, -1
            if with_stat and not dangling:
                st = entry.stat()
                size, mtime = st.st_size, st.st_mtime_ns
            files.append([entry.path, size, mtime, label, dangling])
    return classes, files


def verify_one(path: str, mode: str, dangling: bool) -> str:
    """'' for a usable image, else why not."""
    if dangling:
        return f"dangling symlink to {os.readlink(path)}"
    if mode == "none":
        return ""
    from PIL import Image

    try:
        with Image.open(path) as im:
            if mode == "full":
                im.load()
            else:
                im.verify()
    except Exception as err:  # PIL raises many types for bad files
        return str(err) or type(err).__name__
    return ""


def _reusable(cached, size: int, mtime: int, mode: str) -> bool:
    """A cached verdict stands if the file is unchanged and it was checked at least as strictly."""
    if cached is None or cached[0] != size or cached[1] != mtime or size < 0:
        return False
    cached_mode, verdict = cached[2], cached[3]
    return cached_mode == mode or (not verdict and cached_mode == "full") or (bool(verdict) and cached_mode == "header")


def cache_paths(root: Path) -> list[Path]:
    """Under the data root when it is writable, else in the user's cache directory."""
    key = hashlib.sha256(os.path.abspath(root).encode()).hexdigest()[:20]
    user_cache = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return [root / CACHE_NAME, Path(user_cache) / "hpcnn" / "verified" / f"{key}.json"]


def load_cache(root: Path) -> dict:
    for path in cache_paths(root):
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        if data.get("version") == CACHE_VERSION and data.get("root") == os.path.abspath(root):
            return data["files"]
    return {}


def save_cache(root: Path, files: dict) -> Path | None:
    text = json.dumps({"version": CACHE_VERSION, "root": os.path.abspath(root), "files": files},
                      separators=(",", ":"))
    for path in cache_paths(root):
        try:
            return atomic_write_text(path, text, fsync=False)
        except OSError:
            continue
    log.warning("could not write the verification cache of %s (read-only, and no writable cache directory)", root)
    return None


def layout(root: Path) -> dict[str, Path]:
    """{split: folder}: train/val[/test] sub-folders when both train and val exist, else the root itself."""
    split_dirs = {s: root / s for s in ("train", "val", "test") if (root / s).is_dir()}
    return split_dirs if "train" in split_dirs and "val" in split_dirs else {"": root}


def build_manifest(root: Path, mode: str) -> dict:
    """List every split of ``root`` and verify what changed since the cached verdicts."""
    prefix = os.path.abspath(root) + os.sep
    cache = load_cache(root) if mode != "none" else {}
    fresh, splits, stats = {}, {}, {"files": 0, "verified": 0, "reused": 0}
    for split, folder in layout(root).items():
        classes, files = scan_classes(folder, with_stat=mode != "none")
        rows = []
        for path, size, mtime, label, dangling in files:
            rel = os.path.abspath(path)[len(prefix):]
            cached = cache.get(rel)
            if not dangling and _reusable(cached, size, mtime, mode):
                verdict, checked = cached[3], cached[2]
                stats["reused"] += 1
            else:
                verdict, checked = verify_one(path, mode, dangling), mode
                stats["verified"] += mode != "none" and not dangling
            if mode != "none":
                fresh[rel] = [size, mtime, checked, verdict]
            rows.append([path, size, mtime, label, verdict])
        stats["files"] += len(rows)
        splits[split] = {"folder": str(folder), "classes": classes, "files": rows}
    if mode != "none" and (stats["verified"] or len(fresh) != len(cache)):
        save_cache(root, fresh)
    return {"version": MANIFEST_VERSION, "root": str(root), "verify": mode, "splits": splits, "stats": stats}


MANIFEST_NAME = "data-manifest.json"


def job_manifest(root: Path, mode: str) -> dict:
    """The manifest of ``root`` for this job: built by global rank 0 alone, read by the others.

    With a run directory rank 0 writes it there (the record of exactly which files this job saw)
    and the other ranks read that one file; a failure on rank 0 reaches every rank as an error.
    """
    from .jobscope import current

    job = current()
    manifest, message, error = None, None, None
    if job.is_main:
        try:
            manifest = build_manifest(root, mode)
            message = ("inline", manifest)
            if job.run_dir is not None:
                text = json.dumps(manifest, separators=(",", ":"))
                message = ("file", str(atomic_write_text(job.run_dir / MANIFEST_NAME, text, fsync=False)))
        except Exception as err:  # noqa: BLE001 - the other ranks must hear of it, not wait
            error, message = err, ("error", f"{type(err).__name__}: {err}")
    if job.world_size > 1:
        message = job.comm.broadcast_object(message)
    if error is not None:
        raise error
    if manifest is not None:  # rank 0 keeps the one it built
        return manifest
    kind, payload = message
    if kind == "error":
        raise DatasetError(f"rank 0 could not list the image folder ({payload})", str(root),
                           "read rank 0's log for the cause")
    return payload if kind == "inline" else json.loads(Path(payload).read_text())


__all__ = ["IMAGE_SUFFIXES", "build_manifest", "layout", "scan_classes", "verify_one", "walk_images"]
