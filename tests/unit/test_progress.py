"""Progress: a tqdm bar on a terminal, plain timestamped lines in batch logs; only rank 0 talks."""
from __future__ import annotations

import fcntl
import io
import logging
import os
import re
import select
import struct
import termios
import time

import pytest

from hpcnn.progress import Progress, bar
from hpcnn.train.logs import setup_logging

STAMPED = re.compile(r"^\[\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\] ")


class FakeTTY(io.StringIO):
    def isatty(self):
        return True


def test_progress_redraws_in_place_on_a_terminal():
    out = FakeTTY()
    p = Progress(True, stream=out)
    p.show(1, 10, "epoch 1/3", "step 1")
    p.show(2, 10, "epoch 1/3", "step 2")
    p.close()
    text = out.getvalue()
    assert "\r" in text and "\n" not in text
    drawn = [s for s in text.split("\r") if s.strip()]
    assert "step 1" in drawn[-2] and "step 2" in drawn[-1] and text.split("\r")[-1].strip() == ""  # cleared


def test_progress_logs_lines_in_batch_files(caplog):
    out = io.StringIO()
    with caplog.at_level(logging.INFO, logger="hpcnn.train"):
        Progress(True, stream=out, log=logging.getLogger("hpcnn.train")).show(5, 10, line="epoch 1/3 step 5")
    assert out.getvalue() == "" and "epoch 1/3 step 5" in caplog.text


def test_bar():
    assert bar(5, 10, width=10) == "[#####.....]"


@pytest.fixture(params=[(24, 100), (0, 0)], ids=["100-columns", "no-size"])  # no size: a pty made by `script`
def pty_stream(request):
    master, slave = os.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", *request.param, 0, 0))
    stream = os.fdopen(slave, "w", encoding="utf-8")
    yield stream, master
    stream.close()
    os.close(master)


def _read(fd: int) -> str:
    data = b""
    while select.select([fd], [], [], 0.2)[0]:
        data += os.read(fd, 65536)
    return data.decode("utf-8", "replace")


def test_a_terminal_gets_a_tqdm_bar(pty_stream, caplog):
    stream, master = pty_stream
    assert stream.isatty()
    with caplog.at_level(logging.INFO, logger="hpcnn"):
        p = Progress(True, stream=stream, unit="step")
        p.show(30, 120, "epoch 2/5", "loss 0.4321 lr 1.00e-03 1,234 img/s", line="never logged")
        p.close()
        count = Progress(True, 50, what="predicted", unit="img", stream=stream)
        count.update(10)
        time.sleep(0.15)  # tqdm redraws at most every 0.1 s
        count.update(10)
        count.close()
    text = _read(master)
    assert "epoch 2/5" in text and " 25%|" in text and "30/120" in text and "loss 0.4321" in text
    assert "predicted" in text and "20/50" in text and "img/s" in text
    assert "\r" in text and "never logged" not in caplog.text and "predicted" not in caplog.text


def test_a_batch_log_gets_timestamped_lines_without_carriage_returns(tmp_path):
    log = setup_logging(rank=0)
    handler, stdout = log.handlers[0], log.handlers[0].stream
    path = tmp_path / "slurm-123.out"
    with open(path, "w") as f:
        handler.setStream(f)
        try:
            p = Progress(True, stream=f, unit="step", log=logging.getLogger("hpcnn.train"))
            for step in (10, 20):
                p.show(step, 20, "epoch 1/1", "loss 1.0", line=f"epoch 1/1 {bar(step, 20)} step {step}/20")
            p.close()
            count = Progress(True, 10, what="predicted", unit="img", every_s=3600, every_batches=2, stream=f,
                             log=logging.getLogger("hpcnn.predict"))
            for _ in range(5):
                count.update(2)
            count.close()
        finally:
            handler.setStream(stdout)
    text = path.read_text()
    lines = text.splitlines()
    assert "\r" not in text and len(lines) == 4 and all(STAMPED.match(line) for line in lines)
    assert lines[1].endswith("epoch 1/1 [########################] step 20/20")
    assert re.search(r"\] predicted 4/10 \(40\.0%\), [\d,]+ img/s, eta [\d,]+ s$", lines[2])
    assert "predicted 8/10 (80.0%)" in lines[3]


def test_other_ranks_show_nothing(pty_stream, caplog):
    stream, master = pty_stream
    with caplog.at_level(logging.INFO, logger="hpcnn"):
        for out in (stream, io.StringIO()):
            p = Progress(False, 10, what="predicted", stream=out)
            p.show(1, 10, "epoch 1/1", line="epoch 1/1 step 1")
            p.update(5)
            p.close()
    assert _read(master) == "" and caplog.text == ""
