"""Writes that run out of space are one line (what ran out, where, bytes needed and free), and what was
there before is intact: on a real small file system (tmpfs), under a real file-size limit, and for
output places that cannot be created."""
from __future__ import annotations

import json
import os
import subprocess

import pytest

from hpcnn.errors import StorageError
from hpcnn.files import append_text, atomic_write, atomic_write_text, check_writable
from tests.helpers import PYTHON, REPO, run_hpcnn
from tests.support.small_fs import PAGE, fill, small_filesystem


@pytest.fixture
def small(tmp_path):
    with small_filesystem(tmp_path / "fs", 16 * PAGE) as fs:
        yield fs


def test_a_full_file_system_is_one_line_and_the_file_before_is_intact(small):
    path = small / "summary.json"
    atomic_write_text(path, "old\n")
    big = "x" * (40 * PAGE)
    with pytest.raises(StorageError) as caught:
        atomic_write_text(path, big)
    message = str(caught.value)
    assert "\n" not in message and message.startswith("the file system is full: summary.json")
    assert f"needs {len(big):,} bytes" in message and "bytes free there" in message and str(path) in message
    assert "the previous version of the file is intact" in message
    assert path.read_text() == "old\n" and sorted(os.listdir(small)) == ["summary.json"]  # no temporary left


def test_without_a_size_the_message_says_how_much_was_written(small):
    def stream(f):
        for _ in range(64):
            f.write(b"y" * PAGE)

    with pytest.raises(StorageError, match=r"full: rows\.csv needs more than the [\d,]+ bytes written.*nothing was "
                                           r"written") as caught:
        atomic_write(small / "rows.csv", stream)
    assert isinstance(caught.value.__cause__, OSError) and not os.listdir(small)


def test_an_append_that_runs_out_leaves_every_complete_line(small):
    log = small / "metrics.jsonl"
    for step in range(3):
        append_text(log, json.dumps({"step": step}) + "\n")
    before = log.read_bytes()
    fill(small)
    with pytest.raises(StorageError, match="full: appending to metrics.jsonl needs .* keeps every line written"):
        append_text(log, json.dumps({"step": 3, "pad": "z" * 2 * PAGE}) + "\n")  # more than its page holds
    assert log.read_bytes() == before


def test_a_file_size_limit_is_one_line_too(tmp_path):
    """RLIMIT_FSIZE (``ulimit -f``): writes past it fail with EFBIG — any user can set one, no root needed."""
    target = tmp_path / "big.txt"
    code = ("import resource, sys\n"
            "resource.setrlimit(resource.RLIMIT_FSIZE, (4096, resource.getrlimit(resource.RLIMIT_FSIZE)[1]))\n"
            "from hpcnn.errors import StorageError\nfrom hpcnn.files import atomic_write_text\n"
            "try:\n    atomic_write_text(sys.argv[1], 'x' * 10000)\n"
            "except StorageError as err:\n    print(err)\n")
    proc = subprocess.run([PYTHON, "-c", code, str(target)], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("the file size limit of this process (ulimit -f) is reached: big.txt needs "
                                  "10,000 bytes"), proc.stdout
    assert not os.listdir(tmp_path)


def test_an_output_place_that_cannot_be_made_is_found_before_any_work(tmp_path):
    blocker = tmp_path / "a_file"
    blocker.write_text("")
    with pytest.raises(StorageError, match=r"cannot write --out .*a_file/sub/p\.csv: Not a directory"):
        check_writable(blocker / "sub" / "p.csv", "--out")
    with pytest.raises(StorageError, match="--out .* is a directory"):
        check_writable(tmp_path, "--out")
    dangling = tmp_path / "link"
    dangling.symlink_to(tmp_path / "gone" / "deeper")
    with pytest.raises(StorageError, match="cannot write --out"):
        check_writable(dangling / "p.csv", "--out")
    ok = check_writable(tmp_path / "new" / "dir" / "p.csv", "--out")
    assert ok.parent.is_dir() and not os.listdir(ok.parent)  # made, probed, nothing left in it


def test_any_command_that_fills_the_disk_ends_in_one_line(small):
    """A write outside hpcnn.files (PIL saving images for `hpcnn data generate`): the CLI's last resort."""
    proc = run_hpcnn("data", "generate", "--out", small / "galaxies", "--n", "400", "--size", "64", timeout=120)
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2 and len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr[-2000:]
    assert lines[0].startswith("error: the file system is full") and "files written before are intact" in lines[0]


def test_the_list_of_inputs_on_a_full_disk_is_one_line(small):
    from hpcnn.predict.listing import EntryList

    names = (f"/data/images/{i:08d}.png" for i in range(100_000))  # ~2.7 MB of paths onto 64 KiB
    with pytest.raises(StorageError, match=r"full: the list of inputs needs more than the [\d,]+ bytes written.*"
                                           r"no prediction was written; set TMPDIR"):
        EntryList.write(names, str(small))
    assert not os.listdir(small)


def test_a_storage_error_is_still_an_oserror_for_writes_that_may_fail(small):
    """Optional writes (a verification cache, a progress file) tolerate ``except OSError``: they still do."""
    import errno

    fill(small)
    with pytest.raises(OSError) as caught:
        atomic_write_text(small / "cache.json", "x" * (2 * PAGE))
    assert isinstance(caught.value, StorageError) and caught.value.errno == errno.ENOSPC
    assert caught.value.filename == str(small / "cache.json")
