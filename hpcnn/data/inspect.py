"""``hpcnn data inspect``: how big a data set is, in what shape, and whether to pack or stage it.

Cheap on purpose (one directory walk, no image decoded) so it can run on a login node. The advice
follows docs/data.md "Large data sets on a cluster": many small files -> pack them into shards;
one big file or a pack on a shared file system that fits node-local storage -> stage it.
"""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

from .listing import walk_images

PACK_ABOVE_FILES = 10_000   # a folder with more image files than this is worth packing
SHARED_FS = {"lustre", "gpfs", "nfs", "nfs4", "cifs", "smb3", "beegfs", "ceph", "fuse.ceph", "panfs", "wekafs",
             "fuse.sshfs", "glusterfs", "fuse.glusterfs", "orangefs"}


def fstype(path: Path) -> str:
    """The file system type holding ``path`` (the longest mount point above it in /proc/mounts)."""
    target, best, kind = str(Path(path).resolve()), "", "unknown"
    try:
        lines = Path("/proc/mounts").read_text().splitlines()
    except OSError:
        return kind
    for line in lines:
        parts = line.split()
        if len(parts) < 3:
            continue
        mount = parts[1].replace("\\040", " ")
        inside = target == mount or target.startswith(mount.rstrip("/") + "/")
        if inside and len(mount) > len(best):
            best, kind = mount, parts[2]
    return kind


def _folder(root: Path) -> dict:
    top = root / "train" if (root / "train").is_dir() and (root / "val").is_dir() else root
    classes = sorted(e.name for e in os.scandir(top) if e.is_dir() and not e.name.startswith("."))
    files = size = 0
    for entry, dangling in walk_images(str(root)):  # the image files the training listing finds
        files += 1
        size += 0 if dangling else entry.stat().st_size
    return {"files": files, "images": files, "bytes": size, "classes": classes}


def _hdf5(root: Path) -> dict:
    report = {"files": 1, "images": None, "bytes": root.stat().st_size, "classes": []}
    try:
        import h5py
        import numpy as np

        with h5py.File(root, "r") as f:
            key = "ans" if "ans" in f else "labels"
            if key in f:
                labels = np.asarray(f[key])
                report["images"] = int(len(labels))
                report["classes"] = [str(c) for c in range(int(labels.max()) + 1)]
    except (ImportError, OSError, ValueError):
        pass
    return report


def _pack(root: Path) -> dict:
    manifest = json.loads((root / "index.json").read_text())
    shards = [s for split in manifest["splits"].values() for s in split["shards"]]
    return {"files": 2 * len(shards) + 1, "images": sum(s["samples"] for s in shards),
            "bytes": sum(s["bytes"] for s in shards), "classes": list(manifest["classes"]), "shards": len(shards)}


def _scratch_bytes(profile_name: str | None) -> tuple[int | None, str]:
    """What node-local storage can take: the profile's local_scratch_gb, else the free space of $TMPDIR here."""
    if profile_name:
        from ..slurm.site.profiles import load_profile

        profile = load_profile(profile_name)
        if profile.local_scratch_gb:
            return int(profile.local_scratch_gb * 1e9), f"profile {profile.name} local_scratch_gb"
    where = os.environ.get("HPCNN_LOCAL_SCRATCH") or os.environ.get("TMPDIR") or "/tmp"
    try:
        return shutil.disk_usage(where).free, f"free space of {where} on this machine"
    except OSError:
        return None, "unknown"


def inspect_source(data_cfg, profile_name: str | None = None) -> dict:
    root = Path(data_cfg.root or "").expanduser()
    kind = data_cfg.source
    reports = {"folder": _folder, "hdf5": _hdf5, "shards": _pack}
    report = reports[kind](root) if kind in reports else {"files": 0, "images": None, "bytes": 0, "classes": []}
    scratch, scratch_from = _scratch_bytes(profile_name)
    fs = fstype(root) if str(root) else "unknown"
    return {"kind": kind, "root": str(root), **report, "fstype": fs, "shared_fs": fs in SHARED_FS,
            "scratch_bytes": scratch, "scratch_from": scratch_from}


def advice(report: dict) -> list[str]:
    """One line per recommendation, with the command or config line that acts on it."""
    out = []
    if report["kind"] == "folder":
        if report["files"] > PACK_ABOVE_FILES:
            out.append(f"pack this folder ({report['files']:,} files > {PACK_ABOVE_FILES:,}): "
                       f"`hpcnn data pack {report['root']} --out DIR`, then data.source: shards (one open per shard "
                       "per worker instead of one per image)")
        else:
            out.append(f"{report['files']:,} files: reading the folder directly is fine (pack above "
                       f"{PACK_ABOVE_FILES:,} files)")
    if report["kind"] in ("hdf5", "shards"):
        fits = report["scratch_bytes"] is not None and report["bytes"] <= report["scratch_bytes"]
        if not fits:
            out.append(f"larger than node-local storage ({report['scratch_from']}): read it in place "
                       "(data.stage: none)")
        elif report["shared_fs"]:
            out.append(f"stage this {'file' if report['kind'] == 'hdf5' else 'pack'}: data.stage: auto (it is on "
                       f"{report['fstype']}, a shared file system, and fits {report['scratch_from']})")
        else:
            out.append(f"on a local file system ({report['fstype']}): staging gains nothing here; on a cluster's "
                       "shared file system use data.stage: auto")
    return out


__all__ = ["PACK_ABOVE_FILES", "advice", "fstype", "inspect_source"]
