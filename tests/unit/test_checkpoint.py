"""Atomic checkpoints, retention, and fallback from a corrupt newest file."""
from __future__ import annotations

import os

import pytest
import torch

from hpcnn.errors import CheckpointError
from hpcnn.train import checkpoint as ckpt


def state(epoch, step=0):
    return {"epoch": epoch, "step_in_epoch": step, "w": torch.full((3,), float(epoch))}


def test_keep_last_and_order(tmp_path):
    for e in range(5):
        ckpt.save_checkpoint(state(e, 7 if e == 4 else 0), tmp_path, keep_last=2)
    names = [p.name for p in ckpt.list_checkpoints(tmp_path)]
    assert names == ["ckpt-e0003-s0000000.pt", "ckpt-e0004-s0000007.pt"]
    loaded, path = ckpt.load_latest(tmp_path)
    assert loaded["epoch"] == 4 and path.name.endswith("s0000007.pt")
    assert not [p for p in os.listdir(tmp_path) if p.endswith(".tmp")]


def test_corrupt_latest_falls_back_with_warning(tmp_path, caplog):
    ckpt.save_checkpoint(state(1), tmp_path, keep_last=3)
    newest = ckpt.save_checkpoint(state(2), tmp_path, keep_last=3)
    newest.write_bytes(newest.read_bytes()[:50])  # truncated, as after a crash mid-copy
    loaded, path = ckpt.load_latest(tmp_path)
    assert loaded["epoch"] == 1
    assert "unreadable" in caplog.text and newest.name in caplog.text
    records = [r for r in caplog.records if "unreadable" in r.getMessage()]
    assert len(records) == 1 and "\n" not in records[0].getMessage()  # one line naming both files
    assert path.name in records[0].getMessage()


def test_weights_only_failure_is_one_line(tmp_path, caplog):
    """A file torch refuses under weights_only=True must not flood the log with torch's long explanation."""
    import datetime

    import torch

    ckpt.save_checkpoint(state(1), tmp_path, keep_last=3)
    newest = tmp_path / ckpt.checkpoint_name(2, 0)
    torch.save({"epoch": 2, "payload": datetime.date(2026, 1, 1)}, newest)  # needs full unpickling
    loaded, path = ckpt.load_latest(tmp_path)
    assert loaded["epoch"] == 1
    [record] = [r for r in caplog.records if "unreadable" in r.getMessage()]
    assert "\n" not in record.getMessage() and newest.name in record.getMessage()


def test_all_corrupt_is_a_clear_error(tmp_path):
    ckpt.save_checkpoint(state(1), tmp_path, keep_last=3).write_bytes(b"garbage")
    with pytest.raises(CheckpointError, match="no readable checkpoint"):
        ckpt.load_latest(tmp_path)
    assert ckpt.load_latest(tmp_path / "empty") is None


def test_failed_write_leaves_previous_file_intact(tmp_path):
    path = tmp_path / "x.pt"
    ckpt.atomic_save({"a": torch.ones(2)}, path)

    class Unpicklable:
        def __reduce__(self):
            raise RuntimeError("boom")

    with pytest.raises(RuntimeError):
        ckpt.atomic_save({"a": Unpicklable()}, path)
    assert torch.equal(ckpt.load_file(path)["a"], torch.ones(2))
    assert sorted(os.listdir(tmp_path)) == ["x.pt"]


class Arbitrary:
    """Stands for any pickled object that could run code when loaded."""


def test_weights_only_refuses_arbitrary_objects(tmp_path):
    path = tmp_path / "evil.pt"
    torch.save({"obj": Arbitrary()}, path)
    with pytest.raises(Exception, match="[Ww]eights only"):
        ckpt.load_file(path)


def test_a_full_disk_while_checkpointing_is_one_line_and_the_previous_checkpoint_resumes(tmp_path):
    """ENOSPC out of torch.save (which wraps it in a RuntimeError) on a real small file system."""
    from hpcnn.errors import StorageError
    from tests.support.small_fs import PAGE, small_filesystem

    with small_filesystem(tmp_path / "run", 32 * PAGE) as run:
        directory = run / "checkpoints"
        first = ckpt.save_checkpoint(state(1), directory, keep_last=2)
        big = {"epoch": 2, "step_in_epoch": 0, "w": torch.zeros(64 * PAGE // 4)}  # twice the file system
        with pytest.raises(StorageError) as caught:
            ckpt.save_checkpoint(big, directory, keep_last=2)
        message = str(caught.value)
        assert "\n" not in message and message.startswith("the file system is full: the checkpoint needs "
                                                          f"{ckpt.saved_size(big):,} bytes")
        assert f"({directory / 'ckpt-e0002-s0000000.pt'})" in message
        assert f"the previous checkpoint {first.name} is intact: resume from it with `hpcnn train --resume {run}`" \
            in message
        assert [p.name for p in directory.iterdir()] == [first.name]  # no temporary file left behind
        loaded, path = ckpt.load_latest(directory)
        assert path == first and loaded["epoch"] == 1
