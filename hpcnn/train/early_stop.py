"""Tracks the monitored metric: best value, best epoch, epochs without improvement."""
from __future__ import annotations

import math


class EarlyStopper:
    def __init__(self, cfg):
        self.metric, self.mode = cfg.metric, cfg.mode
        self.patience, self.min_delta = cfg.patience, cfg.min_delta
        self.best = math.inf if self.mode == "min" else -math.inf
        self.best_epoch = -1
        self.bad_epochs = 0

    def update(self, value: float, epoch: int) -> bool:
        """Record one epoch's value; True when it is a new best."""
        better = value < self.best - self.min_delta if self.mode == "min" else value > self.best + self.min_delta
        if better:
            self.best, self.best_epoch, self.bad_epochs = value, epoch, 0
        else:
            self.bad_epochs += 1
        return better

    @property
    def should_stop(self) -> bool:
        return self.patience > 0 and self.bad_epochs >= self.patience

    def state_dict(self) -> dict:
        return {"best": self.best, "best_epoch": self.best_epoch, "bad_epochs": self.bad_epochs}

    def load_state_dict(self, state: dict) -> None:
        self.best, self.best_epoch, self.bad_epochs = state["best"], state["best_epoch"], state["bad_epochs"]
