"""The file system of a run fills up between two checkpoints: one line, nothing lost, the run resumes."""
from __future__ import annotations

import json

import pytest

from hpcnn.config import load_job
from hpcnn.errors import StorageError
from hpcnn.run import run_job
from hpcnn.train.checkpoint import list_checkpoints
from hpcnn.train.events import Callback
from tests.helpers import TINY
from tests.support.small_fs import PAGE, fill, small_filesystem


class FillAfterFirstCheckpoint(Callback):
    """Once the first checkpoint is on disk, someone else's job takes the rest of the file system
    (all but two pages: room for the next metrics lines, not for a checkpoint)."""

    def on_checkpoint(self, trainer, path, position) -> None:
        if path is not None and len(list_checkpoints(path.parent)) == 1:
            fill(path.parent, leave=2 * PAGE)


def test_a_full_disk_at_a_checkpoint_is_one_line_and_the_run_resumes(tmp_path):
    cfg = load_job(None, [*TINY, "train.checkpoint.keep_best=false"])
    with small_filesystem(tmp_path / "scratch", 4 << 20) as scratch:
        run = scratch / "run"
        with pytest.raises(StorageError) as caught:
            run_job(cfg, run_dir=run, callbacks=[FillAfterFirstCheckpoint()])
        message = str(caught.value)
        first = "ckpt-e0001-s0000000.pt"
        assert "\n" not in message and message.startswith("the file system is full: the checkpoint needs ")
        assert str(run / "checkpoints" / "ckpt-e0002-s0000000.pt") in message
        assert f"the previous checkpoint {first} is intact: resume from it with `hpcnn train --resume {run}`" in message
        assert [p.name for p in list_checkpoints(run / "checkpoints")] == [first]
        lines = (run / "metrics.jsonl").read_text().splitlines()
        assert lines and all(json.loads(line) for line in lines)  # every record written is whole
        (run / "checkpoints" / ".filler").unlink()  # space again: the run continues where it stopped
        result = run_job(cfg, run_dir=run, resume="required")
        assert result.status == "completed" and result.summary["epochs_run"] == 2
