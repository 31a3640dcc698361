"""The trainer's built-in subscribers: progress line, metrics.jsonl, TensorBoard, GPU telemetry."""
from __future__ import annotations

import logging
import os
import sys

from .. import rundir
from ..progress import Progress, bar
from .events import Callback, LogPoint
from .logs import JsonlWriter
from .tensorboard import TensorBoardWriter

log = logging.getLogger("hpcnn.train")


class ProgressLine(Callback):
    """A tqdm bar on a terminal, a plain timestamped line per log point in batch logs (rank 0)."""

    def __init__(self):
        self.progress = None

    def on_run_start(self, trainer) -> None:
        self.progress = Progress(trainer.is_main, unit="step", stream=sys.stdout, log=log)

    def on_log(self, trainer, p: LogPoint) -> None:
        epoch = f"{p.phase + ': ' if len(trainer.phases) > 1 else ''}epoch {p.epoch + 1}/{trainer.total_epochs}"
        stats = f"loss {p.loss:.4f} lr {p.lr:.2e} {p.images_per_second:,.0f} img/s"
        self.progress.show(p.step, p.steps_per_epoch, epoch, stats,
                           f"{epoch} {bar(p.step, p.steps_per_epoch)} step {p.step}/{p.steps_per_epoch} {stats}")

    def on_stage(self, trainer, stage: str, global_step: int) -> None:
        if stage != "train":  # the bar leaves the terminal before evaluation and checkpoints log their lines
            self.progress.close()


class MetricsFile(Callback):
    """metrics.jsonl: one line per epoch; on resume, lines written after the checkpoint are dropped."""

    def on_run_start(self, trainer) -> None:
        self.writer = JsonlWriter(trainer.run_dir / rundir.METRICS_FILE) if trainer.is_main else None
        if self.writer and trainer.resumed_from is not None:
            self.writer.path.unlink(missing_ok=True)
            for record in trainer.history:
                self.writer.write(record)

    def on_epoch_end(self, trainer, record: dict) -> None:
        if self.writer:
            self.writer.write(record)


class GpuTelemetry(Callback):
    """Every rank samples the GPU it trains on (NVML, side thread), each sample tagged with the trainer's
    stage, phase, epoch and global step; rank 0 keeps ``progress.json`` (for `hpcnn top`) and adds the
    job's GPU summary across nodes. Without a driver: one log line, nothing else changes."""

    def __init__(self, interval_s: float):
        self.interval_s = interval_s
        self.sampler = self.tag = self.progress = None
        self.sampling = False  # the same on every rank (device type), so the end-of-run barrier matches

    def on_run_start(self, trainer) -> None:
        from ..monitor import GpuSampler, PositionTag, ProgressFile
        from ..monitor.nvml import NVML_MODULE_ENV

        self.tag = PositionTag(stage="setup", epoch=trainer.position.epoch, step=trainer.global_step)
        self.progress = ProgressFile(trainer.run_dir, self.interval_s) if trainer.is_main else None
        self._publish(force=True)
        cuda = trainer.device.type == "cuda"
        if not cuda and not os.environ.get(NVML_MODULE_ENV):  # the stand-in NVML (tests) samples on CPU too
            if trainer.is_main:
                log.info("GPU monitoring off: this job trains on %s", trainer.device.type)
            return
        self.sampling = True
        self.sampler = GpuSampler(trainer.run_dir / "gpu" / f"rank{trainer.comm.rank}.jsonl", self.interval_s,
                                  cuda_ordinal=(trainer.device.index or 0) if cuda else None,
                                  uuid=cuda_uuid(trainer.device) if cuda else None, tag=self.tag,
                                  rank=trainer.comm.rank, announce=trainer.is_main, progress=self.progress)
        if not self.sampler.start():
            self.sampler = None

    def _publish(self, force: bool = False) -> None:
        if self.progress is not None:
            self.progress.update(self.tag.get(), force)

    def on_phase_start(self, trainer, phase) -> None:
        if self.tag is not None:
            self.tag.move(phase=phase.name)

    def on_stage(self, trainer, stage: str, global_step: int) -> None:
        if self.tag is None:  # driven without on_run_start (benchmarks call the epoch method directly)
            return
        changed = stage != self.tag.get().get("stage")
        self.tag.move(stage=stage, step=global_step, epoch=global_step // max(1, trainer.steps_per_epoch))
        self._publish(force=changed)  # a new stage shows at once; more of the same waits for the interval

    def on_log(self, trainer, p: LogPoint) -> None:
        if self.tag is None:
            return
        self.tag.move(stage="train", phase=p.phase, epoch=p.epoch, step=p.global_step)
        if self.sampler is None:  # else the sampler thread refreshes progress.json after each sample
            self._publish()

    def on_run_end(self, trainer, summary: dict) -> None:
        if self.tag is not None:
            self.tag.move(stage="done")
            self._publish(force=True)
        if not self.sampling:
            return
        if self.sampler is not None:
            self.sampler.stop()
        trainer.comm.barrier()  # every rank's samples are on disk before rank 0 reads them
        if not trainer.is_main:
            return
        from ..monitor import summarize, summary_lines
        from ..monitor.series import epoch_data_wait

        images = round(summary.get("images_per_second", 0) * summary.get("train_seconds", 0)) or None
        try:
            gpu = summarize(trainer.run_dir, images, summary.get("data_wait_fraction"),
                            trainer.cfg.data.num_workers, epoch_data_wait(trainer.history))
        except Exception as err:  # a summary must never cost the job its results
            log.warning("GPU summary failed: %s", err)
            return
        if gpu is None:
            return
        summary["gpu"] = gpu
        for line in summary_lines(gpu):
            (log.warning if line.startswith("GPU advice") else log.info)("%s", line)


def cuda_uuid(device) -> str | None:
    """The torch device's UUID as torch reports it, so the sampler watches exactly that GPU.

    CUDA's device numbers need not be NVML's (CUDA_DEVICE_ORDER, cgroups); the UUID is the same
    on both sides. torch gives it without the "GPU-"/"MIG-" prefix; the monitor tries both.
    """
    try:
        import torch

        return str(torch.cuda.get_device_properties(device.index or 0).uuid) or None
    except Exception:
        return None


def builtin_callbacks(cfg) -> list[Callback]:
    callbacks: list[Callback] = [ProgressLine(), MetricsFile(), TensorBoardWriter()]
    if cfg.monitor.enabled:
        callbacks.append(GpuTelemetry(cfg.monitor.interval_s))
    return callbacks


__all__ = ["GpuTelemetry", "MetricsFile", "ProgressLine", "TensorBoardWriter", "builtin_callbacks"]
