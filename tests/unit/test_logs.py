"""Progress on a terminal, plain timestamped lines in batch logs; only rank 0 talks."""
from __future__ import annotations

import io
import logging

from hpcnn.train.logs import Progress, bar, setup_logging


class FakeTTY(io.StringIO):
    def isatty(self):
        return True


def test_progress_redraws_in_place_on_a_terminal():
    out = FakeTTY()
    p = Progress(True, stream=out)
    p.update("step 1")
    p.update("step 2")
    p.done()
    assert out.getvalue().count("\r") == 3 and "\n" not in out.getvalue()


def test_progress_logs_lines_in_batch_files(caplog):
    out = io.StringIO()
    with caplog.at_level(logging.INFO, logger="hpcnn.train"):
        Progress(True, stream=out).update("epoch 1/3 step 5")
    assert out.getvalue() == "" and "epoch 1/3 step 5" in caplog.text


def test_other_ranks_only_warn(capsys):
    log = setup_logging(rank=1)
    logging.getLogger("hpcnn.train").info("chatty")
    logging.getLogger("hpcnn.train").warning("something failed")
    err = capsys.readouterr().err
    assert "chatty" not in err and "rank 1]" in err and "something failed" in err
    setup_logging(rank=0)
    assert log.level == logging.INFO


def test_bar():
    assert bar(5, 10, width=10) == "[#####.....]"
