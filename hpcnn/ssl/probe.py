"""The linear probe: how good a frozen backbone's features are, as logistic-regression accuracy.

The standard measure of a self-supervised representation (SimCLR's run ends with it) and of any
pretrained weights (``probe_weights``): features of the train split fit a linear classifier,
which is scored on the val and test splits.
"""
from __future__ import annotations

import dataclasses
import logging
import time
from types import SimpleNamespace

import torch
import torch.nn.functional as F

from ..data.loaders import ShardBatchSampler, make_loader
from ..dist import SingleComm
from ..models.registry import build_model
from ..train.inputs import job_inputs
from ..train.loop import gather_predictions, predict
from ..train.metrics import classification_metrics
from .simclr import Backbone

log = logging.getLogger("hpcnn.train")


def extract_features(backbone, dataset, normalize, device, comm=None, batch: int = 256, amp_dtype=None):
    """(features, labels) of every image of ``dataset``, in order, on every rank (each rank computes a shard)."""
    comm = comm or SingleComm()
    ctx = SimpleNamespace(device=device, normalize=normalize, channels_last=False, amp_dtype=amp_dtype,
                          non_blocking=False)
    loader = make_loader(dataset, ShardBatchSampler(len(dataset), batch, comm.rank, comm.world_size), 0, False)
    was_training = backbone.training
    try:
        return gather_predictions(predict(backbone, loader, ctx), comm)
    finally:
        backbone.train(was_training)


class LinearProbe:
    """Multinomial logistic regression on standardised features: full-batch L-BFGS, deterministic."""

    def __init__(self, features: torch.Tensor, labels: torch.Tensor, num_classes: int, l2: float = 1e-4,
                 max_iter: int = 500):
        x = features.double()
        self.mean, self.std = x.mean(0), x.std(0).clamp_min(1e-6)
        x = (x - self.mean) / self.std
        self.linear = torch.nn.Linear(x.shape[1], num_classes).double()
        torch.nn.init.zeros_(self.linear.weight)
        torch.nn.init.zeros_(self.linear.bias)
        opt = torch.optim.LBFGS(self.linear.parameters(), lr=1, max_iter=max_iter, history_size=20,
                                tolerance_grad=1e-7, tolerance_change=1e-10, line_search_fn="strong_wolfe")
        y = labels.long()

        def closure():
            opt.zero_grad()
            loss = F.cross_entropy(self.linear(x), y) + 0.5 * l2 * self.linear.weight.pow(2).sum()
            loss.backward()
            return loss

        opt.step(closure)

    @torch.no_grad()
    def logits(self, features: torch.Tensor) -> torch.Tensor:
        return self.linear((features.double() - self.mean) / self.std).float()


def linear_probe(backbone, splits, normalize, device, comm=None, topk: int = 3, l2: float = 1e-4,
                 amp_dtype=None) -> dict:
    """Train a linear classifier on the frozen backbone's features of the training split.

    Returns ``{"val": metrics, "test": metrics or None}`` (``hpcnn.train.metrics``). Features are
    computed once, in inference mode; rank 0 fits the probe and shares the result.
    """
    comm = comm or SingleComm()
    feats = {name: extract_features(backbone, data, normalize, device, comm, amp_dtype=amp_dtype)
             for name, data in (("train", splits.train), ("val", splits.val), ("test", splits.test))
             if data is not None and len(data)}
    result = None
    if comm.is_main:
        t0 = time.perf_counter()
        k = len(splits.classes)
        probe = LinearProbe(*feats["train"], k, l2=l2)
        result = {name: classification_metrics(probe.logits(feats[name][0]), feats[name][1], k, topk)
                  if name in feats else None for name in ("val", "test")}
        log.info("linear probe on %d-d features of %d images (%.1f s): val acc %.4f%s", feats["train"][0].shape[1],
                 len(feats["train"][1]), time.perf_counter() - t0, result["val"]["accuracy"],
                 f", test acc {result['test']['accuracy']:.4f}" if result["test"] else "")
    return comm.broadcast_object(result)


def probe_weights(cfg, weights=None, device=None) -> dict:
    """Linear probe of ``cfg.model``'s backbone on ``cfg.data``, in this process.

    ``weights``: anything ``model.weights`` takes (an hpcnn run directory, a state_dict file, ...),
    or None for the random initialisation of seed ``cfg.seed`` (the baseline).
    """
    device = torch.device(device or "cpu")
    splits, normalize = job_inputs(cfg)
    normalize = normalize.to(device)
    torch.manual_seed(cfg.seed)
    model_cfg = dataclasses.replace(cfg.model, weights=str(weights) if weights is not None else None)
    classifier, _ = build_model(model_cfg, len(splits.classes), cfg.data.channels, cfg.data.image_size)
    backbone = Backbone(classifier, cfg.data.channels, cfg.data.image_size).to(device)
    return linear_probe(backbone, splits, normalize, device, topk=cfg.train.topk)


__all__ = ["LinearProbe", "extract_features", "linear_probe", "probe_weights"]
