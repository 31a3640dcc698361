"""The course-notebook baseline: flatten the image, stack dense layers."""
from __future__ import annotations

from torch import nn


def mlp(num_classes: int, in_channels: int, image_size: int, hidden=(512, 256), dropout=0.3,
        batch_norm=True) -> nn.Module:
    layers: list[nn.Module] = [nn.Flatten()]
    width = in_channels * image_size * image_size
    for h in hidden:
        layers += [nn.Linear(width, h)]
        if batch_norm:
            layers += [nn.BatchNorm1d(h)]
        layers += [nn.ReLU(inplace=True), nn.Dropout(dropout)]
        width = h
    layers.append(nn.Linear(width, num_classes))
    return nn.Sequential(*layers)
