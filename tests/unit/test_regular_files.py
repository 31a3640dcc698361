"""Only regular files are inputs (hpcnn/regular_files.py): FIFOs, sockets and dangling links are named, never opened."""
from __future__ import annotations

import os
import socket

import pytest

from hpcnn.regular_files import NotARegularFile, regular_files, require_regular, walk_files


@pytest.fixture
def tree(tmp_path):
    """a.png, b/ (c.png, .hidden.png), d.png -> a.png, fifo.png, sock.png, gone.png -> nowhere, loop -> ."""
    (tmp_path / "a.png").write_bytes(b"a")
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "c.png").write_bytes(b"c")
    (tmp_path / "b" / ".hidden.png").write_bytes(b"h")
    (tmp_path / "d.png").symlink_to(tmp_path / "a.png")
    os.mkfifo(tmp_path / "fifo.png")
    (tmp_path / "gone.png").symlink_to(tmp_path / "nowhere.png")
    (tmp_path / "loop").symlink_to(tmp_path)  # a link to a folder: not followed (no cycle)
    with socket.socket(socket.AF_UNIX) as sock:
        sock.bind(str(tmp_path / "sock.png"))
        yield tmp_path


def test_the_walk_names_every_entry_in_os_walk_order_and_says_which_are_regular(tree):
    got = [(os.path.relpath(path, tree), regular) for path, regular in walk_files(tree)]
    assert got == [("a.png", True), ("d.png", True), ("fifo.png", False), ("gone.png", False), ("sock.png", False),
                   ("b/c.png", True)]
    assert [os.path.relpath(p, tree) for p in regular_files(tree)] == ["a.png", "d.png", "b/c.png"]
    assert ("b/.hidden.png", True) in [(os.path.relpath(p, tree), r) for p, r in walk_files(tree, hidden=True)]


def test_a_path_is_checked_without_opening_it(tree):
    require_regular(tree / "a.png")
    require_regular(tree / "d.png")  # a link to a regular file is one
    with pytest.raises(NotARegularFile, match=r"^a named pipe \(FIFO\), not a regular file: .*fifo\.png$"):
        require_regular(tree / "fifo.png")  # stat only: opening it would block this test forever
    with pytest.raises(NotARegularFile, match="^a socket"):
        require_regular(tree / "sock.png")
    with pytest.raises(NotARegularFile, match="^a directory"):
        require_regular(tree / "b")
    with pytest.raises(FileNotFoundError):
        require_regular(tree / "gone.png")
    if os.path.exists("/dev/null"):
        with pytest.raises(NotARegularFile, match="^a character device"):
            require_regular("/dev/null")
