"""summary.json: what a user (or ``hpcnn results``) wants to know after a run."""
from __future__ import annotations

import json
import os
import platform
import tempfile
from pathlib import Path

import torch


def _best_val(history: list[dict], best_epoch: int) -> dict:
    for h in history:
        if h["epoch"] == best_epoch:
            return h["val"]
    return history[-1]["val"] if history else {}


def build_summary(cfg, status, history, test, classes, skipped, global_batch, peak_lr, world_size, device,
                  wall_seconds, stopper) -> dict:
    images = sum(h["train"]["images"] for h in history)
    seconds = sum(h["train"]["seconds"] for h in history)
    data_seconds = sum(h["train"]["data_seconds"] for h in history)
    return {
        "name": cfg.name,
        "status": status,
        "metrics": {"val": _best_val(history, stopper.best_epoch), "test": test},
        "best_epoch": stopper.best_epoch + 1 if stopper.best_epoch >= 0 else None,
        "monitor": {"metric": stopper.metric, "best": stopper.best if history else None},
        "epochs_run": len(history),
        "wall_seconds": wall_seconds,
        "train_seconds": seconds,
        "images_per_second": images / seconds if seconds else 0.0,
        "data_wait_fraction": data_seconds / seconds if seconds else 0.0,
        "skipped_files": len(skipped),
        "skipped_file_list": skipped[:100],
        "classes": classes,
        "world_size": world_size,
        "global_batch": global_batch,
        "per_rank_batch": global_batch // world_size,
        "lr_base": cfg.optim.lr,
        "lr_peak": peak_lr,
        "scale_lr": cfg.schedule.scale_lr,
        "device": str(device) if device.type != "cuda" else torch.cuda.get_device_name(device),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "host": platform.node(),
    }


def write_summary(run_dir: Path, summary: dict) -> Path:
    path = Path(run_dir) / "summary.json"
    fd, tmp = tempfile.mkstemp(prefix=".summary.", dir=run_dir)
    with os.fdopen(fd, "w") as f:
        json.dump(summary, f, indent=2, default=float)
    os.replace(tmp, path)
    return path
