"""Atomic checkpoints: a plain dict of state_dicts, written to a temp file, fsynced, renamed.

A reader never sees half a file; a corrupt newest checkpoint (disk full, killed copy)
falls back to the previous one with a warning. Loading uses ``weights_only=True``.
A full file system stops the run with one line (``StorageError``): the bytes the checkpoint
needs, the bytes free, and which earlier checkpoint is intact to resume from.
"""
from __future__ import annotations

import logging
import re
from pathlib import Path

import torch

from ..errors import CheckpointError, StorageError
from ..files import atomic_write

log = logging.getLogger("hpcnn.train")
_NAME = re.compile(r"^ckpt-e(\d+)-s(\d+)\.pt$")


class _Counter:
    """A file that only counts what torch.save writes to it: the exact size of a checkpoint."""

    def __init__(self):
        self.n = 0

    def write(self, data) -> int:
        n = memoryview(data).nbytes
        self.n += n
        return n

    def flush(self) -> None:
        pass


def saved_size(obj) -> int:
    """Bytes ``torch.save(obj)`` writes (serialised once more; only asked for when a write failed)."""
    counter = _Counter()
    torch.save(obj, counter)
    return counter.n


def atomic_save(obj, path: Path) -> None:
    """torch.save through hpcnn's one atomic writer (temp file + fsync + rename; the umask applies)."""
    atomic_write(path, lambda f: torch.save(obj, f), size=lambda: saved_size(obj))


def rng_state(device) -> dict:
    """This process's random streams (CPU, and the GPU it trains on): restored on resume for exact dropout."""
    state = {"cpu": torch.get_rng_state()}
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def set_rng_state(state: dict, device) -> None:
    torch.set_rng_state(state["cpu"])
    if device.type == "cuda" and "cuda" in state:
        torch.cuda.set_rng_state(state["cuda"], device)


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
    try:
        atomic_save(state, path)
    except StorageError as err:
        earlier = [p.name for p in list_checkpoints(directory) if p != path]
        kept = (f"the previous checkpoint {earlier[-1]} is intact: resume from it with `hpcnn train --resume "
                f"{Path(directory).parent}`" if earlier else "no earlier checkpoint of this run exists")
        raise StorageError(err.what.replace(path.name, "the checkpoint", 1), err.where,
                           f"{kept} once there is space") from None
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
            state = load_file(path, map_location)
        except Exception as err:  # truncated zip, bad pickle, ...: torch's message spans many lines
            errors.append((path, first_line(err)))
            continue
        if errors:
            log.warning("skipped unreadable checkpoint%s %s (%s); resuming from %s",
                        "s" if len(errors) > 1 else "", ", ".join(p.name for p, _ in errors), errors[0][1], path.name)
        return state, path
    if candidates:
        raise CheckpointError("no readable checkpoint", str(directory),
                              "; ".join(f"{p.name}: {why}" for p, why in errors))
    return None


def first_line(err: Exception) -> str:
    """An error's message in one line (torch's and the tracer's span many), its type when it has none."""
    text = str(err).strip() or type(err).__name__
    return text.splitlines()[0][:200]
