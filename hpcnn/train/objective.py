"""What a run optimises and how it is judged: the one part of training that differs between tasks.

The Trainer owns everything else (phases, input pipeline, DDP, optimizer step, checkpoints and exact
resume, events, summary) and asks its ``Objective`` for the model, augmentation, loss (``criterion``),
optimizer, early-stopping metric, validation metrics, final weights, the finished run's test and what
that adds to summary.json. The methods below are the protocol, with supervised classification as the
default; docs/training.md has the table and how a new objective (e.g. distillation) is written.
``kind`` is written into checkpoints: a run resumes only with its own objective.
"""
from __future__ import annotations

import logging

import torch.nn.functional as F

from ..config.schema import EarlyStopConfig
from ..errors import ConfigError
from ..models.registry import build_model
from .loop import gather_predictions, predict
from .metrics import classification_metrics
from .optim import build_optimizer

log = logging.getLogger("hpcnn.train")


class Objective:
    """Supervised classification: cross-entropy on the labels, classification metrics, the test split."""

    kind = "supervised"
    caches_features = True  # a phase that trains only the head may train it on cached backbone features
    keeps_best = True       # best.pt, and the test scored with the best epoch's weights
    plots = True            # learning curve and confusion matrix

    def __init__(self, cfg):
        self.cfg = cfg

    def check(self) -> None:
        if self.cfg.ssl.method != "none":
            raise ConfigError(f"ssl.method {self.cfg.ssl.method} is not supervised training", "ssl.method",
                              "start the run with hpcnn.objectives.objective_for(cfg) (as hpcnn.run does)")

    def build_model(self, model_cfg, num_classes: int, classes: list | None = None):
        data = self.cfg.data
        return build_model(model_cfg, num_classes, data.channels, data.image_size, classes)

    def augment(self):
        from ..data.augment import BatchAugment

        return BatchAugment(self.cfg.data.augment, self.cfg.seed)

    def criterion(self, comm):
        smoothing = self.cfg.train.label_smoothing
        return lambda outputs, labels: F.cross_entropy(outputs, labels, label_smoothing=smoothing)

    def optimizer(self, groups, phase):
        return build_optimizer(groups, phase.optim)

    def optimizer_name(self, phase) -> str:
        return phase.optim.name

    def early_stopping(self, trainer) -> EarlyStopConfig:
        return self.cfg.train.early_stopping

    def describe(self, trainer) -> str:
        return (f"training {self.cfg.model.name}: {len(trainer.splits.train)} train / {len(trainer.splits.val)} val "
                f"images, {len(trainer.classes)} classes")

    def evaluate(self, trainer, dataset) -> dict:
        logits, labels = gather_predictions(predict(trainer.model, trainer.eval_loader(dataset), trainer.ctx),
                                            trainer.comm)
        t = self.cfg.train
        return classification_metrics(logits, labels, len(trainer.classes), t.topk, t.label_smoothing)

    def epoch_line(self, record: dict) -> str:
        val = record["val"]
        return f"train loss {record['train']['loss']:.4f} | val loss {val['loss']:.4f} acc {val['accuracy']:.4f} " \
               f"f1 {val['f1_macro']:.4f}"

    def final_weights(self, trainer) -> dict:
        return {"model": trainer.raw_model.state_dict(), "classes": trainer.classes, "preprocess": trainer.preprocess}

    def test(self, trainer) -> dict | None:
        """The test split scored with the best epoch's weights."""
        splits = trainer.splits
        if not (self.cfg.train.eval_test and splits.test is not None and len(splits.test)):
            return None
        if trainer.best_state is not None:
            trainer.raw_model.load_state_dict(trainer.best_state)
        trainer.events.emit("on_stage", "test", trainer.global_step)
        test = self.evaluate(trainer, splits.test)
        if trainer.is_main:
            log.info("test (best epoch weights): acc %.4f f1 %.4f auc %.4f", test["accuracy"], test["f1_macro"],
                     test["auc_ovr"])
        return test

    def add_results(self, summary: dict, tested: dict | None) -> dict:
        summary["metrics"]["test"] = tested
        return summary


Supervised = Objective

__all__ = ["Objective", "Supervised"]
