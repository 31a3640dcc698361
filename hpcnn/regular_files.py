"""Only regular files are inputs: opening a named pipe (FIFO) blocks until someone writes to it, which may
be never; a character device may never end; a socket cannot be opened at all.

A folder listing knows each entry's type from the directory itself (``os.scandir``'s d_type), so
``walk_files`` classifies plain entries without a stat per file; a symbolic link (or a file system
that does not report types) costs one stat, following the link. A path named directly is checked
with one ``os.stat`` (``require_regular``) before it is opened. Opening with O_NONBLOCK alone would
not do: the open returns, but the reader then sees an empty file or a stream that never ends.
Stdlib only: the predict listing, the decoders and the training data listing all use it.
"""
from __future__ import annotations

import os
import stat
from typing import Iterator

_KINDS = ((stat.S_ISDIR, "a directory"), (stat.S_ISFIFO, "a named pipe (FIFO)"), (stat.S_ISSOCK, "a socket"),
          (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"))


class NotARegularFile(OSError):
    """Raised instead of opening something that is not a regular file (the message names what it is)."""


def kind(mode: int) -> str:
    """What a file of this st_mode is, in words."""
    for test, words in _KINDS:
        if test(mode):
            return words
    return "a regular file" if stat.S_ISREG(mode) else "not a regular file"


def require_regular(path: str | os.PathLike) -> None:
    """Return if ``path`` (after symlinks) is a regular file; else raise ``NotARegularFile``, or the
    ``OSError`` of the stat (missing file, dangling link), without ever opening it."""
    mode = os.stat(path).st_mode
    if not stat.S_ISREG(mode):
        raise NotARegularFile(f"{kind(mode)}, not a regular file: {path}")


def walk_files(root: str | os.PathLike, hidden: bool = False) -> Iterator[tuple[str, bool]]:
    """(path, is a regular file) for every entry under ``root`` that is not a directory, in ``os.walk``'s
    order (a folder's entries by name, then its sub-folders by name); hidden names (``.x``) skipped unless
    ``hidden``. Links to directories are not followed (no cycles); a dangling link is listed, not regular,
    so callers can name it. An unreadable folder is skipped, as ``os.walk`` does."""
    try:
        with os.scandir(root) as it:
            entries = sorted(it, key=lambda e: e.name)
    except OSError:
        return
    folders = []
    for entry in entries:
        if entry.is_dir(follow_symlinks=False):
            folders.append(entry.path)
        elif not (entry.is_symlink() and _entry_is(entry.is_dir)) and (hidden or not entry.name.startswith(".")):
            yield entry.path, _entry_is(entry.is_file)  # a regular file or a link to one
    for folder in folders:
        yield from walk_files(folder, hidden)


def _entry_is(test) -> bool:
    """``entry.is_file`` or ``entry.is_dir`` (d_type: no stat for plain entries); False where it cannot tell
    (the entry vanished meanwhile, or is a link into a place we may not look)."""
    try:
        return test()
    except OSError:
        return False


def regular_files(root: str | os.PathLike, hidden: bool = False) -> list[str]:
    """The regular files under ``root`` (see ``walk_files``), sorted as listed: what a data listing reads."""
    return [path for path, regular in walk_files(root, hidden) if regular]


__all__ = ["NotARegularFile", "kind", "regular_files", "require_regular", "walk_files"]
