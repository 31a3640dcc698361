"""Background sampling into ``gpu/rank<R>.jsonl``, each row tagged with where training is.

The trainer's callback moves a ``PositionTag`` (stage, phase, epoch, global step); the sampler
thread reads it when it samples. Moving it rebinds one dict, so neither side locks and the
training loop pays nothing but an attribute assignment. Sampling every ``interval_s`` with
cached handles costs the sampler thread well under a millisecond per GPU (plus NVML's own 20 ms
PCIe window, spent in C with the GIL released). Whatever goes wrong in the sampler is logged
once and sampling goes on; it never raises into training. A sampler that opened NVML itself
closes it when it stops (event sets freed, nvmlShutdown); one handed an ``Nvml`` leaves that to
its owner.
"""
from __future__ import annotations

import json
import logging
import threading
from pathlib import Path

from .nvml import Nvml, open_nvml

log = logging.getLogger("hpcnn.monitor")


class PositionTag:
    """The trainer's current position, shared with the sampler thread (last writer wins, no lock)."""

    def __init__(self, **fields):
        self.fields: dict = {"stage": "setup", **fields}

    def move(self, **fields) -> None:
        self.fields = {**self.fields, **fields}

    def get(self) -> dict:
        return self.fields


class GpuSampler:
    def __init__(self, out: Path, interval_s: float = 5.0, nvml: Nvml | None = None, cuda_ordinal: int | None = None,
                 uuid: str | None = None, tag: PositionTag | None = None, rank: int | None = None,
                 announce: bool = False, progress=None):
        self.out = Path(out)
        self.interval_s = interval_s
        self.nvml = nvml
        self.cuda_ordinal, self.uuid, self.rank, self.announce = cuda_ordinal, uuid, rank, announce
        self.tag = tag or PositionTag(stage="train")
        self.progress = progress  # a ProgressFile (rank 0): refreshed from the tag after each sample
        self.samples = 0
        self.failures = 0
        self._file = None
        self._owns_nvml = False
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def __enter__(self) -> "GpuSampler":
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def start(self) -> bool:
        """Start sampling; False (and nothing happens) where there is no GPU to watch."""
        try:
            if self.nvml is None:
                self.nvml = open_nvml(cuda_ordinal=self.cuda_ordinal, uuid=self.uuid, announce=self.announce)
                self._owns_nvml = self.nvml is not None
            if self.nvml is None:
                return False
            self.out.parent.mkdir(parents=True, exist_ok=True)
            self._file = self.out.open("a")
        except Exception as err:  # monitoring must never fail the job
            log.warning("GPU monitoring off: %s", err)
            self._release()
            self.nvml = None
            return False
        self.write()  # one sample at once: short jobs still get a reading
        self._thread = threading.Thread(target=self._loop, name="hpcnn-gpu-sampler", daemon=True)
        self._thread.start()
        return True

    def stop(self) -> None:
        if self._thread is not None:
            self._stop.set()
            self._thread.join(timeout=10)
            self._thread = None
            self.write()
        if self._file is not None:
            self._file.close()
            self._file = None
        self._release()

    def _release(self) -> None:
        """Close the NVML reader this sampler opened (never one it was handed)."""
        if self._owns_nvml and self.nvml is not None:
            self.nvml.close()
            self.nvml = None
        self._owns_nvml = False

    def write(self) -> None:
        """Take one sample of every GPU and append it; failures are counted and logged once."""
        try:
            where = self.tag.get()
            extra = {"rank": self.rank} if self.rank is not None else {}
            lines = [json.dumps({**row, **extra, **where}) for row in self.nvml.sample()]
            self._file.write("\n".join(lines) + "\n")
            self._file.flush()
            self.samples += 1
        except Exception as err:
            self.failures += 1
            if self.failures == 1:
                log.warning("GPU sample failed (sampling goes on, the job is not affected): %s", err)

    def _loop(self) -> None:
        while not self._stop.wait(self.interval_s):
            self.write()
            if self.progress is not None:
                self.progress.update(self.tag.get(), force=True)


__all__ = ["GpuSampler", "PositionTag"]
