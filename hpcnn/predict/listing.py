"""What to predict: files, folders (recursively), glob patterns, text files listing paths and
Galaxy10-style HDF5 files, lazily.

Inputs are yielded one entry at a time in a stable order (arguments in order; a folder's files
sorted), so a million paths cost a million strings, never decoded images. Every file of a folder is
listed — one that is not an image, or not a regular file (a named pipe would block the reader
forever), becomes a row with an error, not a silent gap and not a hang.
An HDF5 file given as an argument (``.h5``/``.hdf5``, an ``images`` data set N,H,W[,C] uint8)
yields one entry per image, ``file.h5[17]``: the row id is the index. Torch-free.
"""
from __future__ import annotations

import contextlib
import glob
import os
import re
import tempfile
import weakref
from array import array
from pathlib import Path
from typing import Iterable, Iterator, Sequence

from ..errors import DatasetError
from ..files import out_of_space_error, storage_cause
from ..regular_files import walk_files

LIST_SUFFIXES = (".txt", ".lst")
HDF5_SUFFIXES = (".h5", ".hdf5")
HDF5_DATASET = "images"
_HDF5_ROW = re.compile(r"^(?P<path>.*\.(?:h5|hdf5))\[(?P<index>\d+)\]$", re.IGNORECASE)


def hdf5_row(entry: str) -> tuple[str, int] | None:
    """(file, index) for an entry ``file.h5[17]``; None for an ordinary path."""
    match = _HDF5_ROW.match(entry)
    return (match["path"], int(match["index"])) if match else None


def hdf5_count(path: str | Path) -> int:
    """Number of images in a Galaxy10-style file; errors name the file and what it lacks."""
    try:
        import h5py
    except ImportError:
        raise DatasetError("reading HDF5 inputs needs h5py", str(path), "pip install 'hpcnn[hdf5]'") from None
    try:
        with h5py.File(path, "r") as f:
            if HDF5_DATASET not in f:
                raise DatasetError(f"HDF5 file has no '{HDF5_DATASET}' data set (has {list(f)})", str(path))
            shape = f[HDF5_DATASET].shape
    except OSError as err:
        raise DatasetError(f"cannot read HDF5 file: {err}", str(path)) from None
    if len(shape) not in (3, 4):
        raise DatasetError(f"'{HDF5_DATASET}' must be N,H,W or N,H,W,C images, got shape {shape}", str(path))
    return int(shape[0])


def _listed(path: Path) -> Iterator[str]:
    with open(path) as f:
        for line in f:
            line = line.strip()
            if line and not line.startswith("#"):
                yield line


def list_inputs(items: Iterable[str]) -> Iterator[str]:
    """Every input entry, in order; a missing path or an empty pattern is an error naming it."""
    for item in items:
        item = str(item)
        path = Path(item)
        if path.is_dir():
            # every non-hidden entry that is not a folder: a FIFO or a socket too, so it becomes an error row
            # (the predictor checks each entry is a regular file before opening it), not a silent gap
            yield from (entry for entry, _regular in walk_files(path))
        elif path.is_file() and path.suffix in LIST_SUFFIXES:
            yield from _listed(path)
        elif path.is_file() and path.suffix.lower() in HDF5_SUFFIXES:
            yield from (f"{path}[{i}]" for i in range(hdf5_count(path)))
        elif path.exists() or path.is_symlink():
            yield str(path)
        elif glob.has_magic(item):
            matches = sorted(glob.glob(item, recursive=True))
            if not matches:
                raise DatasetError(f"the pattern {item!r} matches no file", "predict inputs")
            yield from (m for m in matches if not Path(m).is_dir())
        else:
            raise DatasetError(f"input not found: {item}", "predict inputs",
                               "pass image files, folders, glob patterns, .txt lists or .h5 files")


class EntryList(Sequence):
    """Input entries kept in a file, not in memory: 8 bytes per entry (its offset), read back by index.

    A million paths as Python strings cost hundreds of MB; here they cost 8 MB. Reads use
    ``os.pread`` on a descriptor each process opens for itself, so forked DataLoader workers
    index it safely. The file is removed when the list that wrote it is collected (or ``close()``).
    """

    def __init__(self, path: str, offsets: array, parent: "EntryList | None" = None):
        self.path, self.offsets, self._parent = path, offsets, parent
        self._fd, self._pid = None, None

    @classmethod
    def write(cls, entries: Iterable[str], directory: str | None = None) -> "EntryList":
        fd, name = tempfile.mkstemp(prefix=".hpcnn-inputs-", suffix=".bin", dir=directory)
        offsets = array("q", [0])
        try:
            with os.fdopen(fd, "wb", buffering=1 << 20) as f:
                for entry in entries:
                    data = str(entry).encode("utf-8", "surrogateescape")
                    f.write(data)
                    offsets.append(offsets[-1] + len(data))
        except BaseException as err:
            written = os.path.getsize(name)
            os.unlink(name)
            cause = storage_cause(err)
            if cause is None:
                raise
            raise out_of_space_error(cause, name, None, written, what="the list of inputs",
                                     kept="no prediction was written; set TMPDIR to a larger place") from None
        listed = cls(name, offsets)
        listed._finalizer = weakref.finalize(listed, _remove_in, os.getpid(), name)
        return listed

    def __len__(self) -> int:
        return len(self.offsets) - 1

    def __getitem__(self, i):
        if isinstance(i, slice):
            start, stop, step = i.indices(len(self))
            if step != 1:
                raise ValueError("EntryList slices are contiguous")
            return EntryList(self.path, self.offsets[start:max(start, stop) + 1], self)
        if i < 0:
            i += len(self)
        if not 0 <= i < len(self):
            raise IndexError(i)
        if self._pid != os.getpid():
            self._fd, self._pid = os.open(self.path, os.O_RDONLY), os.getpid()
        start = self.offsets[i]
        return os.pread(self._fd, self.offsets[i + 1] - start, start).decode("utf-8", "surrogateescape")

    def __getstate__(self):
        return {"path": self.path, "offsets": self.offsets, "_parent": self._parent, "_fd": None, "_pid": None}

    def close(self) -> None:
        finalizer = getattr(self, "_finalizer", None)
        if finalizer is not None:
            finalizer()


def _remove_in(creator: int, path: str) -> None:
    """Only the process that wrote the list removes it (forked workers exit with a copy of the object)."""
    if os.getpid() == creator:
        with contextlib.suppress(OSError):
            os.unlink(path)


__all__ = ["EntryList", "HDF5_DATASET", "hdf5_count", "hdf5_row", "list_inputs"]
