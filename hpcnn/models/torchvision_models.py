"""Any torchvision classification model by name, head replaced for ``num_classes``.

Weights come only from a local file (``model.weights``): jobs never download.
"""
from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from ..errors import ConfigError


def _replace_head(model: nn.Module, num_classes: int) -> None:
    """Swap the last Linear layer, wherever the architecture keeps it."""
    for attr in ("fc", "classifier", "heads", "head"):
        head = getattr(model, attr, None)
        if head is None:
            continue
        if isinstance(head, nn.Linear):
            setattr(model, attr, nn.Linear(head.in_features, num_classes))
            return
        if isinstance(head, nn.Sequential):
            for i in range(len(head) - 1, -1, -1):
                if isinstance(head[i], nn.Linear):
                    head[i] = nn.Linear(head[i].in_features, num_classes)
                    return
                if isinstance(head[i], nn.Conv2d):  # squeezenet
                    old = head[i]
                    head[i] = nn.Conv2d(old.in_channels, num_classes, old.kernel_size, old.stride)
                    return
    raise ConfigError(f"cannot find the classifier head of torchvision model {type(model).__name__}", "model.name")


def torchvision_model(name: str, num_classes: int, in_channels: int, weights: str | None = None) -> nn.Module:
    import torchvision.models as tvm

    model = tvm.get_model(name, weights=None)
    if weights:
        path = Path(weights).expanduser()
        if not path.is_file():
            raise ConfigError(f"weights file not found: {path}", "model.weights",
                              "download it on a machine with internet and copy it here")
        state = torch.load(path, map_location="cpu", weights_only=True)
        if isinstance(state, dict) and "model" in state and isinstance(state["model"], dict):
            state = state["model"]
        model.load_state_dict(state)
    if in_channels != 3:
        raise ConfigError(f"torchvision model {name} expects 3 input channels, data.channels is {in_channels}",
                          "data.channels", "set data.channels: 3 (grayscale images are repeated)")
    _replace_head(model, num_classes)
    return model
