"""Atomic checkpoints: a plain dict of state_dicts, written to a temp file, fsynced, renamed.

A reader never sees half a file; a corrupt newest checkpoint (disk full, killed copy)
falls back to the previous one with a warning. Loading uses ``weights_only=True``.
"""
from __future__ import annotations

import logging
import os
import re
import tempfile
from pathlib import Path

import torch

from ..errors import CheckpointError

log = logging.getLogger("hpcnn.train")
_NAME = re.compile(r"^ckpt-e(\d+)-s(\d+)\.pt$")


def atomic_save(obj, path: Path) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(obj, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def checkpoint_name(epoch: int, step_in_epoch: int) -> str:
    """Sorted by name = sorted by training progress."""
    return f"ckpt-e{epoch:04d}-s{step_in_epoch:07d}.pt"


def list_checkpoints(directory: Path) -> list[Path]:
    directory = Path(directory)
    if not directory.is_dir():
        return []
    found = [p for p in directory.iterdir() if _NAME.match(p.name)]
    return sorted(found, key=lambda p: tuple(int(g) for g in _NAME.match(p.name).groups()))


def save_checkpoint(state: dict, directory: Path, keep_last: int) -> Path:
    path = Path(directory) / checkpoint_name(state["epoch"], state["step_in_epoch"])
    atomic_save(state, path)
    for old in list_checkpoints(directory)[:-keep_last]:
        old.unlink(missing_ok=True)
    return path


def load_file(path: Path, map_location="cpu") -> dict:
    return torch.load(path, map_location=map_location, weights_only=True)


def load_latest(directory: Path, map_location="cpu") -> tuple[dict, Path] | None:
    """Newest readable checkpoint, or None if there is none; warns for each unreadable one."""
    candidates = list_checkpoints(directory)
    errors = []
    for path in reversed(candidates):
        try:
            return load_file(path, map_location), path
        except Exception as err:  # truncated zip, bad pickle, ...
            log.warning("checkpoint %s is unreadable (%s); trying the previous one", path, err)
            errors.append(f"{path.name}: {err}")
    if candidates:
        raise CheckpointError("no readable checkpoint", str(directory), "; ".join(errors))
    return None
