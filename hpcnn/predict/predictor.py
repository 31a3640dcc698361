"""A trained run applied to image files, with exactly the run's evaluation preprocessing.

The preprocessing is read back, never retyped: checkpoints written by the Trainer carry it
(``preprocess``: image size, channels, centre crop, mean/std); for older runs it is recomputed
from the run's own config. Files are decoded by the same code the trainer uses
(``FileImageSet.load``). An unreadable file is a row with an error, never the end of the job.
Under torchrun/srun each rank predicts a contiguous shard; rank 0 writes every row in input order.
"""
from __future__ import annotations

import csv
import dataclasses
import io
import logging
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from torch.utils.data import DataLoader, Dataset

from ..data.augment import Normalize
from ..data.imagesets import FileImageSet
from ..errors import CheckpointError
from ..files import atomic_write_text
from ..models.registry import build_model
from ..train import checkpoint as ckpt

log = logging.getLogger("hpcnn.predict")
CHECKPOINTS = {"best": ("best.pt", "model_final.pt"), "final": ("model_final.pt",)}


@dataclass
class Predictor:
    model: torch.nn.Module
    classes: list
    preprocess: dict
    device: torch.device
    source: Path

    def normalize(self) -> Normalize:
        return Normalize(torch.tensor(self.preprocess["mean"]), torch.tensor(self.preprocess["std"])).to(self.device)


def _checkpoint(run_dir: Path, which: str) -> Path:
    for name in CHECKPOINTS[which]:
        if (run_dir / "checkpoints" / name).is_file():
            return run_dir / "checkpoints" / name
    raise CheckpointError(f"no {' or '.join(CHECKPOINTS[which])} in {run_dir / 'checkpoints'}", str(run_dir),
                          "pass the directory of a finished run (hpcnn train prints it at the end)")


def _preprocess_of(cfg) -> dict:
    """For runs whose checkpoints predate the stored preprocessing: recompute it from the run's config."""
    from ..train.inputs import input_data, job_inputs, preprocessing

    _, normalize = job_inputs(cfg, announce=False)
    return preprocessing(input_data(cfg), normalize)


def load_predictor(run_dir: str | Path, checkpoint: str = "best", device: str | torch.device = "cpu") -> Predictor:
    from ..results import read_summary
    from ..run import config_for_resume

    run_dir = Path(run_dir)
    cfg = config_for_resume(run_dir)
    path = _checkpoint(run_dir, checkpoint)
    state = ckpt.load_file(path)
    classes = state.get("classes") or (read_summary(run_dir) or {}).get("classes")
    if not classes:
        raise CheckpointError("the run records no class names", str(run_dir), "was it trained by hpcnn?")
    pre = state.get("preprocess") or _preprocess_of(cfg)
    model, _ = build_model(dataclasses.replace(cfg.model, weights=None), len(classes), pre["channels"],
                           pre["image_size"])
    model.load_state_dict(state["model"])
    device = torch.device(device)
    return Predictor(model.to(device).eval(), list(classes), pre, device, path)


class _Files(Dataset):
    """(image or zeros, index, error) per path: decoding failures are data, not exceptions."""

    def __init__(self, paths: list[str], pre: dict):
        self.paths = paths
        self.images = FileImageSet(paths, [0] * len(paths), pre["image_size"], pre["channels"], "fail",
                                   pre["center_crop"])
        self.blank = torch.zeros(pre["channels"], pre["image_size"], pre["image_size"], dtype=torch.uint8)

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int):
        try:
            return self.images.load(i), i, ""
        except Exception as err:  # PIL raises many types: corrupt, truncated, not an image, gone
            return self.blank, i, f"{type(err).__name__}: {str(err).splitlines()[0][:200] if str(err) else ''}"


def _collate(items):
    images, index, errors = zip(*items)
    return torch.stack(images), list(index), list(errors)


@torch.no_grad()
def _predict_shard(p: Predictor, paths: list[str], topk: int, batch: int, workers: int) -> list[list]:
    normalize = p.normalize()
    rows = []
    loader = DataLoader(_Files(paths, p.preprocess), batch_size=batch, num_workers=workers, collate_fn=_collate)
    for images, index, errors in loader:
        x = normalize(images.to(p.device).float().div_(255.0))
        probs = torch.softmax(p.model(x).float(), dim=1).cpu()
        top = probs.topk(min(topk, probs.shape[1]), dim=1)
        for j, i in enumerate(index):
            if errors[j]:
                rows.append([paths[i]] + [""] * (2 * top.indices.shape[1]) + [errors[j]])
                continue
            pairs = [v for c, pr in zip(top.indices[j].tolist(), top.values[j].tolist())
                     for v in (p.classes[c], f"{pr:.9g}")]
            rows.append([paths[i], *pairs, ""])
    return rows


def _csv(rows: list[list], k: int) -> str:
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["path"] + [f"{w}{i}" for i in range(1, k + 1) for w in ("class", "prob")] + ["error"])
    writer.writerows(rows)
    return out.getvalue()


def predict_files(predictor: Predictor, paths, out: str | Path, topk: int = 3, batch: int = 256, workers: int = 0,
                  comm=None) -> dict:
    """Predict ``paths`` (this rank: its contiguous shard) and write one CSV row per input on rank 0."""
    from ..dist import SingleComm

    comm = comm or SingleComm()
    paths = list(paths)
    lo, hi = len(paths) * comm.rank // comm.world_size, len(paths) * (comm.rank + 1) // comm.world_size
    t0 = time.perf_counter()
    rows = _predict_shard(predictor, paths[lo:hi], topk, batch, workers)
    seconds = time.perf_counter() - t0
    shards = comm.all_gather_object(rows)
    k = min(topk, len(predictor.classes))
    result = {"inputs": len(paths), "errors": sum(1 for shard in shards for r in shard if r[-1]),
              "seconds": seconds, "images_per_second": len(paths) / max(seconds, 1e-9), "out": str(out), "checkpoint": str(predictor.source)}
    if comm.is_main:
        atomic_write_text(out, _csv([r for shard in shards for r in shard], k))
        log.info("predicted %d inputs (%d unreadable) in %.1f s: %.0f img/s -> %s", len(paths), result["errors"],
                 seconds, result["images_per_second"], out)
    return result


__all__ = ["Predictor", "load_predictor", "predict_files"]
