"""Progress of a long loop: a tqdm bar on a terminal, plain timestamped log lines in batch logs.

A batch log (slurm-*.out) never gets a carriage return: off a terminal each report is one line through
the ``hpcnn`` logger (its handler stamps it). Only rank 0 reports; the callers pass ``enabled``.
Torch-free: it sits next to ``files`` and ``tables``.
"""
from __future__ import annotations

import logging
import os
import sys
import time

from tqdm import tqdm


class _Bar(tqdm):
    monitor_interval = 0  # no tqdm monitor thread inside a training process


def _size(stream) -> dict:
    """Follow the terminal's width; a terminal that reports no size (0x0: a pty made by ``script``) gets 80
    columns, where tqdm would draw nothing."""
    try:
        cols, rows = os.get_terminal_size(stream.fileno())
    except (AttributeError, OSError, ValueError):
        cols = rows = 0
    return {"dynamic_ncols": True} if cols > 0 and rows > 0 else {"ncols": cols or 80, "nrows": rows or 20}


def bar(done: int, total: int, width: int = 24) -> str:
    """``[#####.....]``: the bar a log line carries."""
    filled = int(width * done / max(1, total))
    return "[" + "#" * filled + "." * (width - filled) + "]"


class Progress:
    """One loop's progress. ``show`` moves to a position, each call a report; ``update`` counts items: the bar
    follows (tqdm redraws at most every 0.1 s), a log gets a line every ``every_s`` seconds or ``every_batches``."""

    def __init__(self, enabled: bool, total: int = 0, *, what: str = "", unit: str = "it", every_s: float = 0.0,
                 every_batches: int = 0, stream=None, log: logging.Logger | None = None):
        self.stream = stream or sys.stderr
        self.enabled, self.total, self.what, self.unit = enabled, total, what, unit
        self.every_s, self.every_batches = every_s, every_batches
        self.tty = enabled and hasattr(self.stream, "isatty") and self.stream.isatty()
        self.log = log or logging.getLogger("hpcnn")
        self.bar: tqdm | None = None
        self.t0 = self.last = time.perf_counter()
        self.done = self.batches = 0

    def _new_bar(self, total: int, initial: int, desc: str, postfix: str = "") -> tqdm:
        self.bar = _Bar(total=total, initial=initial, desc=desc, postfix=postfix or None, unit=self.unit,
                        file=self.stream, leave=False, **_size(self.stream))  # drawn as it is made
        return self.bar

    def show(self, done: int, total: int, desc: str = "", postfix: str = "", line: str = "") -> None:
        """At ``done`` of ``total``: the bar with ``desc`` and ``postfix`` on a terminal, else ``line`` logged."""
        if not self.enabled:
            return
        if not self.tty:
            self.log.info(line)
        elif self.bar is None:
            self._new_bar(total, done, desc, postfix)
        else:
            self.bar.total, self.bar.n = total, done
            self.bar.set_description_str(desc, refresh=False)
            self.bar.set_postfix_str(postfix)

    def update(self, n: int) -> None:
        """``n`` more items done."""
        self.done += n
        self.batches += 1
        if not self.enabled:
            return
        if self.tty:
            (self.bar or self._new_bar(self.total, 0, self.what)).update(n)
            return
        now = time.perf_counter()
        if not ((self.every_batches and self.batches % self.every_batches == 0) or now - self.last >= self.every_s):
            return
        self.last = now
        rate = self.done / max(now - self.t0, 1e-9)
        eta = (self.total - self.done) / rate if rate > 0 else 0.0
        self.log.info(f"{self.what} {self.done:,}/{self.total:,} ({100 * self.done / max(1, self.total):.1f}%), "
                      f"{rate:,.0f} {self.unit}/s, eta {eta:,.0f} s")

    def close(self) -> None:
        """The bar cleared from the terminal (a later ``show`` starts a new one)."""
        if self.bar is not None:
            self.bar.close()
            self.bar = None


__all__ = ["Progress", "bar"]
