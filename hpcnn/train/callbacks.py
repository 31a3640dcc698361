"""The trainer's built-in subscribers: progress line, metrics.jsonl, TensorBoard, GPU telemetry."""
from __future__ import annotations

import logging

from .events import Callback, LogPoint
from .logs import JsonlWriter, Progress, TensorBoard, bar
from .metrics import scalar_metrics

log = logging.getLogger("hpcnn.train")


class ProgressLine(Callback):
    """A live line on a terminal, a plain timestamped line per log point in batch logs (rank 0)."""

    def __init__(self):
        self.progress = None

    def on_run_start(self, trainer) -> None:
        self.progress = Progress(trainer.is_main)

    def on_log(self, trainer, p: LogPoint) -> None:
        phase = f"{p.phase}: " if len(trainer.phases) > 1 else ""
        self.progress.update(f"{phase}epoch {p.epoch + 1}/{trainer.total_epochs} {bar(p.step, p.steps_per_epoch)} "
                             f"step {p.step}/{p.steps_per_epoch} loss {p.loss:.4f} lr {p.lr:.2e} "
                             f"{p.images_per_second:,.0f} img/s")

    def on_epoch_end(self, trainer, record: dict) -> None:
        self.progress.done()


class MetricsFile(Callback):
    """metrics.jsonl: one line per epoch; on resume, lines written after the checkpoint are dropped."""

    def on_run_start(self, trainer) -> None:
        self.writer = JsonlWriter(trainer.run_dir / "metrics.jsonl") if trainer.is_main else None
        if self.writer and trainer.resumed_from is not None:
            self.writer.path.unlink(missing_ok=True)
            for record in trainer.history:
                self.writer.write(record)

    def on_epoch_end(self, trainer, record: dict) -> None:
        if self.writer:
            self.writer.write(record)


class TensorBoardWriter(Callback):
    def on_run_start(self, trainer) -> None:
        purge = trainer.global_step if trainer.resumed_from is not None else None
        self.tb = TensorBoard(trainer.run_dir / "tb", trainer.cfg.train.tensorboard and trainer.is_main, purge)

    def on_log(self, trainer, p: LogPoint) -> None:
        self.tb.scalars("train", {"loss": p.loss, "lr": p.lr, "images_per_second": p.images_per_second},
                        p.global_step)

    def on_epoch_end(self, trainer, record: dict) -> None:
        self.tb.scalars("val", scalar_metrics(record["val"]), (record["epoch"] + 1) * trainer.steps_per_epoch)

    def on_run_end(self, trainer, summary: dict) -> None:
        self.tb.close()


class GpuTelemetry(Callback):
    """Every rank samples the GPU it trains on (NVML, side thread); rank 0 adds the job's GPU summary."""

    def __init__(self, interval_s: float):
        self.interval_s = interval_s
        self.sampler = None

    def on_run_start(self, trainer) -> None:
        if trainer.device.type != "cuda":
            return
        from ..monitor import GpuSampler

        (trainer.run_dir / "gpu").mkdir(exist_ok=True)
        self.sampler = GpuSampler(trainer.run_dir / "gpu" / f"rank{trainer.comm.rank}.jsonl", self.interval_s,
                                  cuda_ordinal=trainer.device.index or 0)
        self.sampler.start()

    def on_run_end(self, trainer, summary: dict) -> None:
        if self.sampler is None:
            return
        self.sampler.stop()
        trainer.comm.barrier()  # every rank's samples are on disk before rank 0 reads them
        if not trainer.is_main:
            return
        from ..monitor import summarize

        images = round(summary.get("images_per_second", 0) * summary.get("train_seconds", 0)) or None
        gpu = summarize(trainer.run_dir, images)
        if gpu is None:
            return
        summary["gpu"] = gpu
        log.info("GPU: %d device(s), mean utilisation %s%%, max memory %s MiB, energy %.0f J (%s J/image)",
                 gpu["gpus"], _fmt(gpu["util_mean_percent"]), _fmt(gpu["mem_max_mib"]), gpu["energy_j"],
                 _fmt(gpu["energy_per_image_j"], 4))
        for note in gpu["notes"]:
            log.warning("GPU note: %s", note)


def _fmt(value, digits: int = 0) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def builtin_callbacks(cfg) -> list[Callback]:
    callbacks: list[Callback] = [ProgressLine(), MetricsFile(), TensorBoardWriter()]
    if cfg.monitor.enabled:
        callbacks.append(GpuTelemetry(cfg.monitor.interval_s))
    return callbacks


__all__ = ["GpuTelemetry", "MetricsFile", "ProgressLine", "TensorBoardWriter", "builtin_callbacks"]
