"""Conv-BN-ReLU-pool stacks with a dropout dense head, as in the course notebooks.

Global average pooling before the head keeps the parameter count independent of the
image size, so one config works at 32² and 224².
"""
from __future__ import annotations

from torch import nn


def simple_cnn(num_classes: int, in_channels: int, channels=(32, 64, 128, 128), hidden=(256,),
               dropout=0.3, batch_norm=True) -> nn.Module:
    layers: list[nn.Module] = []
    prev = in_channels
    for c in channels:
        layers.append(nn.Conv2d(prev, c, 3, padding=1, bias=not batch_norm))
        if batch_norm:
            layers.append(nn.BatchNorm2d(c))
        layers += [nn.ReLU(inplace=True), nn.MaxPool2d(2)]
        prev = c
    head: list[nn.Module] = [nn.AdaptiveAvgPool2d(1), nn.Flatten()]
    for h in hidden:
        head += [nn.Dropout(dropout), nn.Linear(prev, h), nn.ReLU(inplace=True)]
        prev = h
    head += [nn.Dropout(dropout), nn.Linear(prev, num_classes)]
    return nn.Sequential(nn.Sequential(*layers), nn.Sequential(*head))
