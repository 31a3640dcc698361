"""What a job feeds its network: the data splits and the input normalisation, decided in one place.

With torchvision weights (and ``model.preprocess_from_weights``) both follow the weights' own
metadata: their mean/std, and their eval geometry (shorter side to crop/resize ratio, centre crop)
unless ``data.center_crop`` says otherwise. Otherwise: the training split's statistics.
"""
from __future__ import annotations

import dataclasses
import logging

import torch

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
    return splits, Normalize.from_sample(splits.train.stats_sample(), data.normalize)


__all__ = ["input_data", "job_inputs", "preprocessing"]
