"""Plain timestamped lines in batch logs; only rank 0 talks (progress bars: test_progress.py)."""
from __future__ import annotations

import logging

from hpcnn.train.logs import setup_logging


def test_other_ranks_only_warn(capsys):
    log = setup_logging(rank=1)
    logging.getLogger("hpcnn.train").info("chatty")
    logging.getLogger("hpcnn.train").warning("something failed")
    err = capsys.readouterr().err
    assert "chatty" not in err and "rank 1]" in err and "something failed" in err
    setup_logging(rank=0)
    assert log.level == logging.INFO

