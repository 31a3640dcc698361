"""Rank-0 output: a progress line on a terminal, plain timestamped lines in batch logs.

Other ranks log only warnings and errors, so a 64-rank job's slurm-*.out stays readable.
"""
from __future__ import annotations

import json
import logging
import sys
import time
from pathlib import Path

from ..files import append_text  # out of space: one StorageError line, no half record left behind


class _Formatter(logging.Formatter):
    def format(self, record):
        stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(record.created))
        prefix = f"[{stamp}]" if getattr(record, "rank", None) in (None, 0) else f"[{stamp} rank {record.rank}]"
        return f"{prefix} {record.getMessage()}"


def setup_logging(rank: int, debug: bool = False) -> logging.Logger:
    logger = logging.getLogger("hpcnn")
    logger.handlers.clear()
    handler = logging.StreamHandler(sys.stdout if rank == 0 else sys.stderr)
    handler.setFormatter(_Formatter())
    handler.addFilter(lambda r: setattr(r, "rank", rank) or True)
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG if debug else (logging.INFO if rank == 0 else logging.WARNING))
    logger.propagate = False
    return logger


class Progress:
    """In-place progress on a TTY (rank 0); on files every update is its own log line."""

    def __init__(self, enabled: bool, stream=None):
        self.stream = stream or sys.stdout
        self.enabled = enabled
        self.tty = enabled and hasattr(self.stream, "isatty") and self.stream.isatty()
        self.log = logging.getLogger("hpcnn.train")

    def update(self, text: str) -> None:
        if not self.enabled:
            return
        if self.tty:
            self.stream.write("\r\033[K" + text)
            self.stream.flush()
        else:
            self.log.info(text)

    def done(self) -> None:
        if self.tty:
            self.stream.write("\r\033[K")
            self.stream.flush()


def bar(done: int, total: int, width: int = 24) -> str:
    filled = int(width * done / max(1, total))
    return "[" + "#" * filled + "." * (width - filled) + "]"


class JsonlWriter:
    def __init__(self, path: Path):
        self.path = Path(path)

    def write(self, record: dict) -> None:
        append_text(self.path, json.dumps(record, default=float) + "\n")


class TensorBoard:
    """Optional event files; a missing tensorboard package disables it with one warning."""

    def __init__(self, log_dir: Path, enabled: bool, purge_step: int | None = None):
        self.writer = None
        if not enabled:
            return
        try:
            from torch.utils.tensorboard import SummaryWriter
        except Exception as err:
            logging.getLogger("hpcnn").warning("TensorBoard disabled: %s", err)
            return
        self.writer = SummaryWriter(str(log_dir), purge_step=purge_step)

    def scalars(self, prefix: str, values: dict, step: int) -> None:
        if self.writer:
            for k, v in values.items():
                self.writer.add_scalar(f"{prefix}/{k}", v, step)

    def close(self) -> None:
        if self.writer:
            self.writer.close()
