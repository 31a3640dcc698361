"""A trained run as one file a colleague can use without hpcnn: ``torch.export`` + a JSON sidecar.

``model.pt2`` holds the network (eval mode, dynamic batch size); ``model.json`` says what to feed
it — the image size, channels, centre crop, mean/std of the run's evaluation preprocessing — and
what comes out (the class names, in logit order). Loading needs plain PyTorch only:

    ep = torch.export.load("model.pt2"); logits = ep.module()(x)
"""
from __future__ import annotations

from pathlib import Path

import torch

from ..files import atomic_write, atomic_write_json
from .predictor import load_predictor


def export_run(run_dir: str | Path, out: str | Path, checkpoint: str = "best") -> tuple[Path, Path]:
    """Write ``out`` (.pt2) and ``out`` with suffix .json; returns both paths."""
    p = load_predictor(run_dir, checkpoint)
    pre = p.preprocess
    example = torch.zeros(2, pre["channels"], pre["image_size"], pre["image_size"])
    batch = torch.export.Dim("batch", min=1, max=1 << 16)
    program = torch.export.export(p.model, (example,), dynamic_shapes=({0: batch},))
    out = Path(out)
    atomic_write(out, lambda f: torch.export.save(program, f))
    meta = out.with_suffix(".json")
    atomic_write_json(meta, {
        "format": "torch.export", "torch": torch.__version__, "source": str(p.source), "classes": p.classes,
        "input": {"shape": ["batch", pre["channels"], pre["image_size"], pre["image_size"]], "dtype": "float32",
                  "scale": "pixel values / 255, then (x - mean) / std per channel",
                  "mean": pre["mean"], "std": pre["std"], "center_crop": pre["center_crop"],
                  "resize": ("shorter side to image_size / center_crop, then the central square"
                             if pre["center_crop"] else "the whole image to image_size x image_size, bilinear")},
        "output": "logits, one per class in the order of 'classes'"})
    return out, meta


__all__ = ["export_run"]
