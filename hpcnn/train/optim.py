"""Optimizer factory over prepared parameter groups (see ``freeze.param_groups``).

Each group carries ``lr_scale``; the loop sets ``lr = schedule(step) * lr_scale`` every step.
"""
from __future__ import annotations

import torch


def build_optimizer(groups: list[dict], cfg) -> torch.optim.Optimizer:
    if not any(g["params"] for g in groups):
        raise ValueError("no trainable parameters")
    groups = [g for g in groups if g["params"]]
    if cfg.name == "sgd":
        return torch.optim.SGD(groups, lr=cfg.lr, momentum=cfg.momentum, nesterov=cfg.nesterov)
    if cfg.name == "adam":
        return torch.optim.Adam(groups, lr=cfg.lr, betas=tuple(cfg.betas))
    if cfg.name == "adamw":
        return torch.optim.AdamW(groups, lr=cfg.lr, betas=tuple(cfg.betas))
    return torch.optim.RMSprop(groups, lr=cfg.lr, momentum=cfg.momentum)
