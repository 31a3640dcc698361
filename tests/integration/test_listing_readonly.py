"""A data folder on a read-only file system (a shared, read-only data set): the verdicts go to the user's cache.

Real read-only mount (a tmpfs remounted ``ro``, as root): no writability guess, the write itself fails.
"""
from __future__ import annotations

import logging
import os
import subprocess

import pytest

from hpcnn.data.listing import CACHE_NAME, build_manifest, cache_paths
from hpcnn.data.synthetic import write_image_folder

N_FILES = 24


def _mount(*args) -> bool:
    return subprocess.run(["mount", *args], capture_output=True, timeout=30).returncode == 0


@pytest.fixture
def read_only_folder(tmp_path):
    """An image folder on a real file system mounted read-only."""
    mount = tmp_path / "ro"
    mount.mkdir()
    if os.geteuid() != 0 or not _mount("-t", "tmpfs", "-o", "size=8m", "tmpfs", str(mount)):
        if os.environ.get("CI") == "true":  # CI runs as root: this must run there
            pytest.fail("could not mount a tmpfs (CI runs as root)")
        pytest.skip("mounting a tmpfs needs root")
    try:
        write_image_folder(mount / "images", N_FILES, size=16, split_fractions=None)
        assert _mount("-o", "remount,ro", str(mount)), "remount read-only"
        yield mount / "images"
    finally:
        subprocess.run(["umount", str(mount)], capture_output=True, timeout=30)


def test_verdicts_of_a_read_only_folder_are_cached_in_the_users_cache(read_only_folder, tmp_path, monkeypatch):
    with pytest.raises(OSError):  # really read-only, even for root
        (read_only_folder / "probe").write_text("x")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    first = build_manifest(read_only_folder, "header")
    assert first["stats"] == {"files": N_FILES, "verified": N_FILES, "reused": 0}
    user_cache = cache_paths(read_only_folder)[1]
    assert user_cache.is_file() and str(user_cache).startswith(str(tmp_path / "xdg"))
    assert not (read_only_folder / CACHE_NAME).exists()
    second = build_manifest(read_only_folder, "header")  # the next job on the unchanged folder
    assert second["stats"] == {"files": N_FILES, "verified": 0, "reused": N_FILES}
    assert second["splits"] == first["splits"]


def test_no_writable_cache_anywhere_still_lists_and_says_so(read_only_folder, caplog, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(read_only_folder / "cache"))  # on the read-only mount too
    with caplog.at_level(logging.WARNING, logger="hpcnn"):
        manifest = build_manifest(read_only_folder, "header")
    assert manifest["stats"]["verified"] == N_FILES
    assert sum(len(s["files"]) for s in manifest["splits"].values()) == N_FILES
    assert any("could not write the verification cache" in r.getMessage() and str(read_only_folder) in r.getMessage()
               for r in caplog.records)
