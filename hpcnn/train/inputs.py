"""What a job feeds its network: the data splits and the input normalisation, decided in one place.

With torchvision weights (and ``model.preprocess_from_weights``) both follow the weights' own
metadata: their mean/std, and their eval geometry (shorter side to crop/resize ratio, centre crop)
unless ``data.center_crop`` says otherwise. Otherwise: the training split's statistics.
"""
from __future__ import annotations

import dataclasses
import logging

import torch

from ..data import jobscope
from ..data.augment import Normalize
from ..data.sources import Splits, load_splits
from ..models.weights import weights_preprocessing

log = logging.getLogger("hpcnn.train")


def input_data(cfg, announce: bool = False):
    """The data section as the job loads it: with torchvision weights, their centre-crop ratio filled in."""
    pre = weights_preprocessing(cfg.model)
    data = cfg.data
    if pre:
        crop, resize = pre["crop_size"][0], pre["resize_size"][0]
        if announce and data.image_size != crop:
            log.warning("model.weights %s were trained on %d² crops; data.image_size is %d (fine-tuning adapts, "
                        "but feature extraction works best at the weights' size)", pre["weights"], crop,
                        data.image_size)
        if data.center_crop is None:
            data = dataclasses.replace(data, center_crop=crop / resize)
    return data


def preprocessing(data_cfg, normalize: Normalize) -> dict:
    """What a saved model needs to be fed exactly as in training (kept in best.pt / model_final.pt)."""
    return {"image_size": data_cfg.image_size, "channels": data_cfg.channels, "center_crop": data_cfg.center_crop,
            "mean": normalize.mean.flatten().tolist(), "std": normalize.std.flatten().tolist()}


def job_inputs(cfg, announce: bool = True) -> tuple[Splits, Normalize]:
    """(splits, normalisation on the CPU); ``announce``: log a size mismatch with the weights (rank 0)."""
    pre = weights_preprocessing(cfg.model)
    data = input_data(cfg, announce)
    splits = load_splits(data)
    if pre:
        return splits, Normalize(torch.tensor(pre["mean"]), torch.tensor(pre["std"]))
    return splits, _split_statistics(splits.train, data.normalize)


EXACT_STATS_BYTES = 256 << 20  # a float copy of the sample up to this size: computed in one go, as always
STREAM_CHUNK_BYTES = 32 << 20  # float64 working memory per chunk beyond it


def _streamed(chunks) -> Normalize:
    """Per-channel mean/std from float64 sums over chunks: no float copy of a large sample (2,000 x 256² x 3
    would be 1.6 GB, twice over inside ``std``)."""
    total = total_sq = count = 0
    for chunk in chunks:
        x = chunk.to(torch.float64) / 255.0
        total += x.sum(dim=(0, 2, 3))
        total_sq += (x * x).sum(dim=(0, 2, 3))
        count += x.numel() // x.shape[1]
    mean = total / count
    var = (total_sq - count * mean * mean) / max(count - 1, 1)
    return Normalize(mean.float(), var.clamp_min(0).sqrt().float())


def _sample_statistics(train, enabled: bool) -> Normalize:
    chunks = getattr(train, "stats_chunks", None)
    per_image = train.base[0].numel() if chunks is not None and len(train) else 0
    if enabled and per_image and min(len(train), train.STATS_LIMIT) * per_image * 4 > EXACT_STATS_BYTES:
        return _streamed(chunks(chunk=max(1, STREAM_CHUNK_BYTES // (8 * per_image))))
    return Normalize.from_sample(train.stats_sample(), enabled)


def _split_statistics(train, enabled: bool) -> Normalize:
    """Mean/std of the training split, sampled on rank 0 alone (a folder sample is ~500 file opens)."""
    job = jobscope.current()
    if job.world_size == 1:
        return _sample_statistics(train, enabled)
    mine = _sample_statistics(train, enabled) if job.is_main else None
    mean, std = job.comm.broadcast_object((mine.mean, mine.std) if mine is not None else None)
    return Normalize(mean.flatten(), std.flatten())


__all__ = ["input_data", "job_inputs", "preprocessing"]
