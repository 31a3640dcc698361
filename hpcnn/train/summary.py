"""The trainer's side of the results schema: fill ``hpcnn.results.KEYS`` from a finished run."""
from __future__ import annotations

import platform

import torch

from ..results import make_summary


def build_summary(trainer, status: str, wall_seconds: float) -> dict:
    """The run's summary.json, with no test results yet (the objective's ``add_results`` fills them in)."""
    cfg, history, stopper = trainer.cfg, trainer.history, trainer.stopper
    images = sum(h["train"]["images"] for h in history)
    seconds = sum(h["train"]["seconds"] for h in history)
    data_seconds = sum(h["train"]["data_seconds"] for h in history)
    device = trainer.device
    gpu_model = torch.cuda.get_device_name(device) if device.type == "cuda" else None
    first = trainer.phases[0]
    job = trainer.job.to_dict() if trainer.job is not None and trainer.job.job_id else None
    best_val = next((h["val"] for h in history if h["epoch"] == stopper.best_epoch),
                    history[-1]["val"] if history else {})  # the last epoch's when none was best
    return make_summary(
        name=cfg.name, status=status,
        metrics={"val": best_val, "test": None},
        best_epoch=stopper.best_epoch + 1 if stopper.best_epoch >= 0 else None,
        monitor={"metric": stopper.metric, "best": stopper.best if history else None},
        epochs_run=len(history), phases=trainer.phase_reports(),
        wall_seconds=wall_seconds, train_seconds=seconds,
        images_per_second=images / seconds if seconds else 0.0,
        data_wait_fraction=data_seconds / seconds if seconds else 0.0,
        skipped_files=len(trainer.splits.skipped_files), skipped_file_list=trainer.splits.skipped_files[:100],
        classes=trainer.classes, world_size=trainer.comm.world_size, global_batch=trainer.global_batch,
        per_rank_batch=trainer.global_batch // trainer.comm.world_size,
        lr_base=first.optim.lr, lr_peak=trainer.peak_lr(first), scale_lr=first.schedule.scale_lr,
        device=gpu_model or str(device), gpu_model=gpu_model, torch=torch.__version__,
        python=platform.python_version(), host=platform.node(), job=job, weights=trainer.weights_report)
