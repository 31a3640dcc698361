"""``data.stage``: copy a shard pack or an HDF5 file to node-local storage once per node.

On a cluster the data lives on a shared parallel file system; every epoch read from there is
load every user of the cluster shares. With ``data.stage: auto | PATH``, local rank 0 of each node
copies the files to node-local disk (checking the free space first, hashing while it copies and
comparing with the pack's checksums), records sizes and SHA-256 in a marker, and the node's other
ranks wait for that marker. A requeued job (same job id) on the same node finds the marker, re-hashes
the local copy and reuses it. The rendered sbatch script removes ``hpcnn-stage-JOBID`` on every node
at the end, unless the job requeued itself.

Where: ``data.stage: PATH``; ``auto``: ``$HPCNN_LOCAL_SCRATCH`` (the sbatch script exports the
profile's ``local_scratch``, else ``$SLURM_TMPDIR``, else ``$TMPDIR``), else ``$TMPDIR``, else /tmp.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
import shutil
import tempfile
import time
from pathlib import Path

from ..env import detect_world, job_info
from ..errors import ConfigError, DatasetError
from ..files import atomic_write, atomic_write_json

log = logging.getLogger("hpcnn.data")

STAGEABLE = ("shards", "hdf5")
MARKER = ".hpcnn-staged.json"
FAILED = ".hpcnn-stage-failed.json"
LOG = "stage.log"
WAIT_S = 6 * 3600.0  # the node's other ranks wait this long at most for local rank 0's copy
CHUNK = 8 << 20


def stage_base(stage: str) -> Path:
    """The node-local directory under which ``hpcnn-stage-JOBID`` is made."""
    if stage != "auto":
        return Path(stage).expanduser()
    return Path(os.environ.get("HPCNN_LOCAL_SCRATCH") or os.environ.get("TMPDIR") or tempfile.gettempdir())


def stage_dir(stage: str, world=None) -> Path:
    """This node's staging directory: per job (a requeue keeps its id) and per node (host and node index)."""
    world = world or detect_world()
    job = job_info().raw_job_id or "local"
    return stage_base(stage) / f"hpcnn-stage-{job}" / f"{world.hostname}-{world.node_rank}"


def _source_files(data_cfg) -> tuple[Path, list[str], str, dict[str, str]]:
    """(source directory, file names to copy, identity of the source's content, the checksums the pack's
    index promises for its shards: HDF5 has none, it is hashed while copied)."""
    root = Path(data_cfg.root or "").expanduser()
    if data_cfg.source == "hdf5":
        if not root.is_file():
            raise DatasetError(f"HDF5 file not found: {root}", "data.root")
        st = root.stat()
        return root.parent, [root.name], f"{root.resolve()}:{st.st_size}:{st.st_mtime_ns}", {}
    from .shards import INDEX, pack_files, read_manifest

    manifest = read_manifest(root)
    expected = {s["name"]: s["sha256"] for split in manifest["splits"].values() for s in split["shards"]}
    return root, pack_files(manifest), hashlib.sha256((root / INDEX).read_bytes()).hexdigest(), expected


def _sha256(src: Path, out=None) -> str:
    """The SHA-256 of ``src``, its bytes written to the binary file ``out`` on the way when one is given."""
    sha = hashlib.sha256()
    with open(src, "rb") as f:
        while chunk := f.read(CHUNK):
            sha.update(chunk)
            if out is not None:
                out.write(chunk)
    return sha.hexdigest()


def _copy_hashing(src: Path, dst: Path) -> str:
    """Copy atomically, hashing the bytes on the way; returns their SHA-256."""
    digest = []
    atomic_write(dst, lambda out: digest.append(_sha256(src, out)))
    return digest[0]


def _read_json(path: Path) -> dict:
    """The JSON object in ``path``; {} while it is missing or half-written."""
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


def _reusable(target: Path, identity: str) -> dict | None:
    """The marker of a complete copy of this very source whose files still have their sizes and checksums."""
    marker = _read_json(target / MARKER)
    if marker.get("identity") != identity:
        return None
    for name, meta in marker["files"].items():
        path = target / name
        if not path.is_file() or path.stat().st_size != meta["size"] or _sha256(path) != meta["sha256"]:
            return None
    return marker


def _human(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1000:
            return f"{n:.1f} {unit}" if unit != "B" else f"{int(n)} B"
        n /= 1000
    return f"{n:.1f} TB"


def check_room(target: Path, needed: int) -> None:
    """Fail before copying when the node-local file system cannot hold the data."""
    probe = target
    while not probe.exists():
        probe = probe.parent
    free = shutil.disk_usage(probe).free
    if free < needed:
        raise DatasetError(f"node-local storage {probe} has {_human(free)} free but the data needs "
                           f"{_human(needed)}", "data.stage",
                           "stage to a larger disk (data.stage: PATH, or the profile's local_scratch), "
                           "or read from the shared file system (data.stage: none)")


def _note(target: Path, what: str) -> None:
    """One line per copy or reuse in the node's stage.log (what the tests count)."""
    info = job_info()
    with open(target / LOG, "a") as f:
        f.write(f"{time.strftime('%Y-%m-%dT%H:%M:%S')} {what} job={info.raw_job_id or 'local'} "
                f"restart={info.restart_count}\n")


def copy_to(data_cfg, target: Path) -> str:
    """Local rank 0: reuse a verified copy, or check the room and copy; returns 'reused' or 'copied'."""
    root, names, identity, expected = _source_files(data_cfg)
    if _reusable(target, identity):
        _note(target, "reused")
        return "reused"
    target.mkdir(parents=True, exist_ok=True)
    (target / MARKER).unlink(missing_ok=True)
    check_room(target, sum((root / n).stat().st_size for n in names))
    files = {}
    for name in names:
        sha = _copy_hashing(root / name, target / name)
        if name in expected and expected[name] != sha:
            raise DatasetError(f"{root / name} does not match the checksum in its pack index (copied to "
                               f"{target})", "data.root", "the pack is damaged: re-pack it with `hpcnn data pack`")
        files[name] = {"size": (target / name).stat().st_size, "sha256": sha}
    atomic_write_json(target / MARKER, {"identity": identity, "source": str(root), "files": files})
    _note(target, "copied")
    return "copied"


def _attempt() -> dict:
    info = job_info()
    return {"job": info.raw_job_id, "restart": info.restart_count}


def _wait_for_copy(target: Path, identity: str) -> None:
    """The node's other ranks: wait until local rank 0 has written the marker for this source (or failed)."""
    deadline = time.monotonic() + WAIT_S
    while time.monotonic() < deadline:
        failed = _read_json(target / FAILED)
        if failed and {k: failed.get(k) for k in ("job", "restart")} == _attempt():
            raise DatasetError(f"staging on this node failed: {failed['error']}", "data.stage")
        if _read_json(target / MARKER).get("identity") == identity:
            return
        time.sleep(0.2)
    raise DatasetError(f"local rank 0 did not stage the data to {target} within {WAIT_S:.0f} s", "data.stage")


def staged(data_cfg):
    """``data_cfg`` reading from this node's staged copy (unchanged when ``data.stage`` is none)."""
    if data_cfg.stage == "none":
        return data_cfg
    if data_cfg.source not in STAGEABLE:
        raise ConfigError(f"data.stage works for data.source {' or '.join(STAGEABLE)}, not {data_cfg.source}",
                          "data.stage", "pack the data first (`hpcnn data pack`), or set data.stage: none")
    world = detect_world()
    target = stage_dir(data_cfg.stage, world)
    root = Path(data_cfg.root or "").expanduser()
    if world.local_rank == 0:
        start = time.monotonic()
        try:
            how = copy_to(data_cfg, target)
        except Exception as err:
            target.mkdir(parents=True, exist_ok=True)
            atomic_write_json(target / FAILED, {**_attempt(), "error": str(err)})
            raise
        log.info("data.stage: %s %s to %s in %.1f s", how, root, target, time.monotonic() - start)
    else:
        _wait_for_copy(target, _source_files(data_cfg)[2])
    new_root = target / root.name if data_cfg.source == "hdf5" else target
    return dataclasses.replace(data_cfg, root=str(new_root), stage="none")


__all__ = ["check_room", "copy_to", "stage_base", "stage_dir", "staged"]
