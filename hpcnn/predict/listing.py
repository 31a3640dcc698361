"""What to predict: files, folders (recursively), glob patterns and text files listing paths, lazily.

Inputs are yielded one path at a time in a stable order (arguments in order; a folder's files
sorted), so a million paths cost a million strings, never decoded images. Every regular file
of a folder is listed — a file that is not an image becomes a row with an error, not a silent gap.
"""
from __future__ import annotations

import glob
import os
from pathlib import Path
from typing import Iterable, Iterator

from ..errors import DatasetError

LIST_SUFFIXES = (".txt", ".lst")


def _folder(root: Path) -> Iterator[str]:
    for directory, subdirs, names in os.walk(root):
        subdirs.sort()
        for name in sorted(names):
            if not name.startswith("."):
                yield str(Path(directory) / name)


def _listed(path: Path) -> Iterator[str]:
    with open(path) as f:
        for line in f:
            line = line.strip()
            if line and not line.startswith("#"):
                yield line


def list_inputs(items: Iterable[str]) -> Iterator[str]:
    """Every input path, in order; a missing path or an empty pattern is an error naming it."""
    for item in items:
        path = Path(item)
        if path.is_dir():
            yield from _folder(path)
        elif path.is_file() and path.suffix in LIST_SUFFIXES:
            yield from _listed(path)
        elif path.exists() or path.is_symlink():
            yield str(path)
        elif glob.has_magic(item):
            matches = sorted(glob.glob(item, recursive=True))
            if not matches:
                raise DatasetError(f"the pattern {item!r} matches no file", "predict inputs")
            yield from (m for m in matches if not Path(m).is_dir())
        else:
            raise DatasetError(f"input not found: {item}", "predict inputs",
                               "pass image files, folders, glob patterns or a .txt file listing paths")


__all__ = ["list_inputs"]
