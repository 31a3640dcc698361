"""A real, small file system for disk-full tests: a tmpfs of a few pages mounted on a test directory.

Mounting needs root (CI runs as root on Debian 12); elsewhere the tests skip, and under CI=true they
fail instead, like the Slurm tests. Writes past the size get ENOSPC from the kernel, as on a full
scratch file system; nothing is faked.
"""
from __future__ import annotations

import contextlib
import os
import subprocess
from pathlib import Path
from typing import Iterator

import pytest

PAGE = os.sysconf("SC_PAGE_SIZE")


def _unavailable(reason: str) -> None:
    if os.environ.get("CI") == "true":
        pytest.fail(reason, pytrace=False)
    pytest.skip(reason)


@contextlib.contextmanager
def small_filesystem(directory: Path, size: int) -> Iterator[Path]:
    """``directory`` as a tmpfs of ``size`` bytes (whole pages) for the duration; unmounted afterwards."""
    if os.geteuid() != 0:
        _unavailable("mounting a small tmpfs needs root")
    directory.mkdir(parents=True, exist_ok=True)
    pages = max(1, -(-size // PAGE))
    proc = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={pages * PAGE},mode=0755", "tmpfs", str(directory)],
                          capture_output=True, text=True, timeout=30)
    if proc.returncode != 0:
        _unavailable(f"cannot mount a tmpfs on {directory}: {proc.stderr.strip()}")
    try:
        yield directory
    finally:
        subprocess.run(["umount", "-l", str(directory)], capture_output=True, timeout=30)


def fill(directory: Path, leave: int = 0) -> None:
    """Take all but ``leave`` bytes of the file system holding ``directory`` (one filler file)."""
    st = os.statvfs(directory)
    free = st.f_bavail * st.f_frsize
    with open(directory / ".filler", "wb") as f:
        try:
            f.write(b"\0" * max(0, free - leave))
        except OSError:
            pass
