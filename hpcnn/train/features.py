"""Fast feature extraction: a frozen backbone's features computed once, the head trained on them.

When a phase trains only the head, the backbone is frozen (BatchNorm in inference mode, no
dropout) and nothing augments the images, every epoch would push the same images through the
same function. So the features (the head's input) are computed once per phase, sharded over
the ranks and gathered, kept in ``RUN_DIR/features/`` for a resumed run, and the head trains
on them. ``train.cache_features: never`` turns it off, ``always`` insists (and says why not).
"""
from __future__ import annotations

import hashlib
import logging
from pathlib import Path

import torch
from torch import nn

from ..data.augment import model_input
from ..data.loaders import ShardBatchSampler, make_loader
from ..errors import ConfigError
from ..files import atomic_write
from ..models.parts import head_name

log = logging.getLogger("hpcnn.train")


class FeatureSet:
    """In-memory (features, label) pairs, batched like TensorImageSet."""

    def __init__(self, features: torch.Tensor, labels: torch.Tensor):
        self.features, self.labels = features, labels

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int):
        return self.features[i], int(self.labels[i])

    def __getitems__(self, idx):
        index = torch.as_tensor(idx, dtype=torch.int64)
        return self.features[index], self.labels[index]


def why_not(cfg, phase, model: nn.Module, frozen_bn: tuple) -> str | None:
    """None when the phase can train on cached features, else the reason it cannot."""
    if phase.trainable != "head":
        return "the phase trains more than the head"
    a = cfg.data.augment
    if a.hflip or a.vflip or a.rotation or a.random_resized_crop or a.color_jitter:
        return "data.augment changes the images every epoch"
    head = head_name(model)
    backbone = [m for name, m in model.named_children() if name != head]
    modules = [m for b in backbone for m in b.modules()]
    if any(isinstance(m, nn.modules.dropout._DropoutNd) for m in modules):
        return "the backbone has dropout"
    norms = [m for m in modules if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if any(all(m is not f for f in frozen_bn) for m in norms):
        return "backbone BatchNorm layers would update their statistics (set freeze_bn: true)"
    return None


def use_cache(cfg, phase, model: nn.Module, frozen_bn: tuple) -> bool:
    mode = cfg.train.cache_features
    if mode == "never":
        return False
    reason = why_not(cfg, phase, model, frozen_bn)
    if reason and mode == "always":
        raise ConfigError(f"phase '{phase.name}' cannot train on cached features: {reason}",
                          "train.cache_features", "use auto (cache when it is exact) or never")
    return reason is None


def _fingerprint(model: nn.Module, head: str, n: int) -> str:
    """Identifies the backbone weights and the data size a cache file was computed from."""
    digest = hashlib.sha256(str(n).encode())
    for name, tensor in model.state_dict().items():
        if not name.startswith(head + "."):
            digest.update(name.encode())
            digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()[:16]


@torch.no_grad()
def _compute(model: nn.Module, head: nn.Module, dataset, ctx, comm, batch: int):
    """This rank's shard through the model, keeping the head's input; then every rank gets all of it."""
    captured, exact, labels = [], [], []
    hook = head.register_forward_hook(lambda module, inputs, output: captured.append((inputs[0], output)))
    model.eval()
    try:
        loader = make_loader(dataset, ShardBatchSampler(len(dataset), batch, comm.rank, comm.world_size), 0, False)
        for x, y in loader:
            x = model_input(x, ctx.normalize, ctx.device, ctx.channels_last)
            out = model(x)
            if not exact:  # the model's output must be the head's output, or cached features train the wrong thing
                exact.append(torch.equal(captured[-1][1], out))  # same shape and values
            captured[-1] = captured[-1][0].float().cpu()
            labels.append(y)
    finally:
        hook.remove()
    if not all(comm.all_gather_object(all(exact))):
        return None
    local = (torch.cat(captured).numpy(), torch.cat(labels).numpy()) if labels else None
    parts = [p for p in comm.all_gather_object(local) if p is not None]
    return (torch.cat([torch.from_numpy(p[0]) for p in parts]), torch.cat([torch.from_numpy(p[1]) for p in parts]))


def feature_set(model: nn.Module, dataset, ctx, comm, batch: int, cache_dir: Path, phase_name: str) -> FeatureSet | None:
    """The phase's training features: from RUN_DIR/features when they match the backbone, else computed.

    None when the model does more after its head (e.g. SqueezeNet flattens the head's output), so
    training the head alone would not be training the model.
    """
    head = head_name(model)
    key = _fingerprint(model, head, len(dataset))
    path = Path(cache_dir) / f"{phase_name}-train-{key}.pt"
    if path.is_file():
        data = torch.load(path, map_location="cpu", weights_only=True)
        if comm.is_main:
            log.info("training the head on cached features %s", path.name)
        return FeatureSet(data["features"], data["labels"])
    computed = _compute(model, getattr(model, head), dataset, ctx, comm, batch)
    if computed is None:
        return None
    features, labels = computed
    if len(labels) != len(dataset):  # unreadable files were dropped: indices would not line up
        raise ConfigError(f"{len(dataset) - len(labels)} training images could not be read while caching features",
                          "train.cache_features", "remove the unreadable files, or set it to never")
    if comm.is_main:
        atomic_write(path, lambda f: torch.save({"features": features, "labels": labels}, f))
        log.info("cached %d backbone features of size %s in %s", len(labels), tuple(features.shape[1:]), path)
    return FeatureSet(features, labels)


__all__ = ["FeatureSet", "feature_set", "use_cache", "why_not"]
