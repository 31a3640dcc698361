"""Rank-0 output: plain timestamped log lines (hpcnn.progress draws the bars), metrics.jsonl, TensorBoard.

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
