"""In-memory image sets held once per node, not once per rank.

The node's lowest rank builds the uint8 tensor straight into a file in ``/dev/shm`` (tmpfs: the
file *is* memory); the node's other ranks map the same file; then the file's name is removed, so
the memory lives exactly as long as the last process that maps it and nothing outlives the job.
A file left by a job that died between creating and removing it carries its creator's pid and is
swept by the next build on that node. Without room in ``/dev/shm`` every rank builds its own copy.
"""
from __future__ import annotations

import hashlib
import logging
import math
import os
from pathlib import Path

import torch

from ..errors import DatasetError
from .jobscope import DataJob

log = logging.getLogger("hpcnn.data")

PREFIX = "hpcnn-data-"
HEADROOM = 64 << 20


def shm_dir() -> Path | None:
    """Where node-shared sets live; ``HPCNN_SHM_DIR`` overrides (tests), ``none`` turns sharing off."""
    where = os.environ.get("HPCNN_SHM_DIR", "/dev/shm")
    path = Path(where)
    return path if where != "none" and path.is_dir() and os.access(path, os.W_OK) else None


def content_tag(*parts) -> str:
    """A short name for what is built (source, root, size, channels, ...): two sets never collide."""
    return hashlib.sha256(repr(parts).encode()).hexdigest()[:16]


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def sweep_stale(directory: Path) -> list[Path]:
    """Remove node-shared files whose creating process is gone (a job killed mid-build)."""
    removed = []
    for path in directory.glob(PREFIX + "*.u8"):
        try:
            pid = int(path.name[len(PREFIX):].split("-")[1])
        except (IndexError, ValueError):
            continue
        if not _alive(pid):
            path.unlink(missing_ok=True)
            removed.append(path)
    return removed


class _SharedAlloc:
    """``alloc(shape)`` for ``images_to_uint8``: a tensor backed by a new file in ``directory``."""

    def __init__(self, directory: Path | None, tag: str):
        self.directory, self.tag, self.path, self.tensor = directory, tag, None, None

    def __call__(self, shape) -> torch.Tensor:
        n = math.prod(int(d) for d in shape)
        if self.directory is None or n == 0 or not _has_room(self.directory, n):
            return torch.empty(shape, dtype=torch.uint8)
        from ..env import job_info

        safe = "".join(c if c.isalnum() else "_" for c in (job_info().raw_job_id or "local"))[:32]
        self.path = self.directory / f"{PREFIX}{safe}-{os.getpid()}-{self.tag}.u8"
        with open(self.path, "wb") as f:
            f.truncate(n)
        self.tensor = _map(str(self.path), shape)
        return self.tensor


def _has_room(directory: Path, nbytes: int) -> bool:
    st = os.statvfs(directory)
    if st.f_bavail * st.f_frsize >= nbytes + HEADROOM:
        return True
    log.warning("%s has no room for %.0f MB: every rank of this node holds its own copy of the data",
                directory, nbytes / 2 ** 20)
    return False


def _map(path: str, shape) -> torch.Tensor:
    return torch.from_file(path, shared=True, size=math.prod(int(d) for d in shape), dtype=torch.uint8).view(*shape)


def node_shared(job: DataJob, tag: str, build):
    """``build(alloc) -> (uint8 images, meta)`` run once per node; every rank gets both.

    A collective: every rank of the job calls it at the same point. A failure on a node's builder
    is raised on every rank of that node (the builder's own error, the others a one-line pointer).
    """
    if job.world_size == 1:
        return build(lambda shape: torch.empty(shape, dtype=torch.uint8))
    entry, error, alloc = None, None, None
    if job.is_node_leader:
        directory = shm_dir() if job.ranks_on_node > 1 else None
        if directory is not None:
            sweep_stale(directory)
        alloc = _SharedAlloc(directory, tag)
        try:
            images, meta = build(alloc)
            shared = alloc.tensor is not None and images.data_ptr() == alloc.tensor.data_ptr()
            entry = ("ok", str(alloc.path) if shared else None, tuple(images.shape), meta)
        except Exception as err:  # noqa: BLE001 - the other ranks must hear of it, not wait
            error, entry = err, ("error", f"{type(err).__name__}: {err}")
    try:
        entries = job.comm.all_gather_object(entry)
        if error is not None:
            raise error
        result = (images, meta) if job.is_node_leader else _receive(job, entries, build)
        job.comm.barrier()  # every rank of the node has mapped the file: its name can go
        return result
    finally:  # after that barrier; at once when a rank failed or a peer died (nobody else will map it then)
        if alloc is not None and alloc.path is not None:
            alloc.path.unlink(missing_ok=True)


def _receive(job: DataJob, entries: list, build):
    """A follower's share: the node builder's tensor mapped, or its error raised here too."""
    mine = entries[job.node_leader]
    if mine[0] == "error":
        raise DatasetError(f"rank {job.node_leader} of this node could not load the data ({mine[1]})",
                           "data", "read that rank's log for the cause")
    _, path, shape, meta = mine
    if path is None:
        return build(lambda shape: torch.empty(shape, dtype=torch.uint8))
    return _map(path, shape), meta


__all__ = ["content_tag", "node_shared", "shm_dir", "sweep_stale"]
