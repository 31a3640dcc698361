"""Any torchvision classification model by name, head replaced for ``num_classes``.

The architecture is built as torchvision builds it for the chosen pretrained weights
(``weights.builder_kwargs``); the weights themselves are loaded afterwards by
``weights.initial_weights``, from the cache or a local file: jobs never download.
"""
from __future__ import annotations

from torch import nn

from ..errors import ConfigError
from .parts import HEAD_ATTRS
from .weights import builder_kwargs


def _replace_head(model: nn.Module, num_classes: int) -> None:
    """Swap the last Linear layer, wherever the architecture keeps it."""
    for attr in HEAD_ATTRS:
        head = getattr(model, attr, None)
        if isinstance(head, nn.Linear):
            setattr(model, attr, nn.Linear(head.in_features, num_classes))
            return
        if isinstance(head, nn.Sequential):
            for i in range(len(head) - 1, -1, -1):
                if isinstance(head[i], nn.Linear):
                    head[i] = nn.Linear(head[i].in_features, num_classes)
                    return
                if isinstance(head[i], nn.Conv2d):  # squeezenet
                    head[i] = nn.Conv2d(head[i].in_channels, num_classes, head[i].kernel_size, head[i].stride)
                    return
    raise ConfigError(f"cannot find the classifier head of torchvision model {type(model).__name__}", "model.name")


def torchvision_model(name: str, num_classes: int, in_channels: int, weights: str | None = None) -> nn.Module:
    """The architecture for ``name`` (shaped for ``weights`` when they are torchvision's), randomly initialised."""
    import torchvision.models as tvm

    if in_channels != 3:
        raise ConfigError(f"torchvision model {name} expects 3 input channels, data.channels is {in_channels}",
                          "data.channels", "set data.channels: 3 (grayscale images are repeated)")
    model = tvm.get_model(name, weights=None, **builder_kwargs(name, weights))
    _replace_head(model, num_classes)
    return model
