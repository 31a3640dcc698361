"""A CIFAR-style ResNet for small images (3x3 stem, no initial max-pool)."""
from __future__ import annotations

from torch import nn


class BasicBlock(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int):
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True),
            nn.Conv2d(cout, cout, 3, 1, 1, bias=False), nn.BatchNorm2d(cout))
        self.shortcut = nn.Identity()
        if stride != 1 or cin != cout:
            self.shortcut = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x):
        return self.relu(self.body(x) + self.shortcut(x))


def resnet_small(num_classes: int, in_channels: int, width=32, depth=(2, 2, 2), dropout=0.0) -> nn.Module:
    layers: list[nn.Module] = [nn.Conv2d(in_channels, width, 3, 1, 1, bias=False), nn.BatchNorm2d(width),
                               nn.ReLU(inplace=True)]
    cin = width
    for stage, blocks in enumerate(depth):
        cout = width * 2 ** stage
        for b in range(blocks):
            layers.append(BasicBlock(cin, cout, 2 if (b == 0 and stage > 0) else 1))
            cin = cout
    head = [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Dropout(dropout), nn.Linear(cin, num_classes)]
    return nn.Sequential(nn.Sequential(*layers), nn.Sequential(*head))
