"""Trainer events: the one way features hook into training without touching the loop.

A callback subclasses ``Callback`` and overrides the events it needs. Every rank receives
every event, so a callback that writes files checks ``trainer.is_main``; one that runs a
collective (a barrier) must do so on every rank. Events, in order:

    on_run_start                         set up, resumed if asked; before the first phase
    on_phase_start(phase)                model wrapped and optimizer built for this phase
    on_log(point)                        every ``train.log_every`` steps (host-synchronised anyway)
    on_stage(stage, global_step)         the trainer starts training, evaluation, a checkpoint or the test
    on_epoch_end(record)                 validation done; ``record`` is the metrics.jsonl line
    on_checkpoint(path, position)        a checkpoint was written (path is None on ranks != 0)
    on_phase_end(phase)                  the phase ran all its epochs or stopped early
    on_run_end(summary)                  before summary.json is written: callbacks may add keys

The hot loop only calls ``on_log``, at points where it synchronises with the host already.
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class LogPoint:
    phase: str
    epoch: int            # 0-based global epoch
    step: int             # optimizer steps done in this epoch
    steps_per_epoch: int
    global_step: int      # steps since the start of the run
    loss: float           # mean training loss of this epoch so far
    lr: float
    images_per_second: float


@dataclass(frozen=True)
class Position:
    """Where a run is: checkpoints record it, resume continues from it."""
    phase: int = 0        # index into the phases; == len(phases) when training is over
    phase_epoch: int = 0  # epochs done in this phase
    step: int = 0         # optimizer steps done in the current epoch
    epoch: int = 0        # epochs done in the whole run


class Callback:
    def on_run_start(self, trainer) -> None: ...
    def on_phase_start(self, trainer, phase) -> None: ...
    def on_log(self, trainer, point: LogPoint) -> None: ...
    def on_stage(self, trainer, stage: str, global_step: int) -> None: ...
    def on_epoch_end(self, trainer, record: dict) -> None: ...
    def on_checkpoint(self, trainer, path, position: Position) -> None: ...
    def on_phase_end(self, trainer, phase) -> None: ...
    def on_run_end(self, trainer, summary: dict) -> None: ...


class Events:
    """Dispatches each event to the callbacks in order."""

    def __init__(self, trainer, callbacks):
        self.trainer, self.callbacks = trainer, list(callbacks)

    def emit(self, event: str, *args) -> None:
        for callback in self.callbacks:
            getattr(callback, event)(self.trainer, *args)


__all__ = ["Callback", "Events", "LogPoint", "Position"]
