"""SimCLR as an objective of the one Trainer: two views, NT-Xent, and a linear probe at the end.

``ssl.method: simclr`` runs through ``hpcnn.train.trainer.Trainer`` like supervised training, so
launchers, the run directory, the input pipeline (``data.decode`` included), ``metrics.jsonl`` (the
contrastive loss per epoch), TensorBoard, GPU telemetry stages, preemption checkpoints and exact
``--resume`` are the same. Labels are never used for training: the loss ignores them.

What it leaves for the next job: ``checkpoints/model_final.pt`` holds ``{"model": ...}``, the
state_dict of the *configured classifier* (``model.name``) with its head as initialised, so
``model.weights: <this run dir>`` starts a fine-tune or feature-extraction job from the
pretrained backbone with any number of classes (the head is the part that does not match).
At the end a linear probe (logistic regression on the frozen backbone's features, train
split -> val/test) gives the standard measure of the representation: ``test.accuracy``.
"""
from __future__ import annotations

import torch

from ..config import to_dict
from ..config.schema import EarlyStopConfig
from ..data.loaders import RankBatchSampler, make_loader
from ..errors import ConfigError
from ..models.registry import build_model
from ..train.loop import prepare
from ..train.objective import Objective
from ..train.optim import build_optimizer
from ..train.precision import autocast
from .probe import linear_probe
from .simclr import LARS, Backbone, SimCLR, TwoViews, ViewSettings, nt_xent

VAL_EPOCH = -1  # validation views are drawn as if in this epoch: the same views every epoch


class SimCLRObjective(Objective):
    kind = "simclr"
    caches_features = False  # the whole network trains
    keeps_best = False       # model_final.pt is the pretrained backbone; there is no classifier to test
    plots = False

    def check(self) -> None:
        cfg = self.cfg
        if cfg.phases:
            raise ConfigError("SimCLR pretraining is one phase; 'phases' belong to the job that fine-tunes",
                              "phases", "pretrain with train.epochs, then start the fine-tune job with "
                                        "model.weights: <this run dir>")
        if cfg.train.accumulate != 1:
            raise ConfigError("gradient accumulation would split the global batch, and with it the negatives "
                              "of the contrastive loss", "train.accumulate", "use 1 (spread the batch over more "
                                                                             "ranks instead)")

    def build_model(self, model_cfg, num_classes: int, classes: list | None = None):
        data, ssl = self.cfg.data, self.cfg.ssl
        classifier, report = build_model(model_cfg, num_classes, data.channels, data.image_size)
        backbone = Backbone(classifier, data.channels, data.image_size)
        return SimCLR(backbone, ssl.projection_hidden, ssl.projection_dim), report

    def augment(self):
        """The step's augmentation: cat([view 1, view 2]) of this rank's images, so one forward pass sees both."""
        views = TwoViews(ViewSettings.from_config(self.cfg), self.cfg.seed)
        return lambda x, epoch, step, offset, global_batch: torch.cat(views(x, epoch, step, offset, global_batch))

    def criterion(self, comm):
        temperature = self.cfg.ssl.temperature
        return lambda outputs, labels: nt_xent(*outputs.chunk(2), temperature, comm)  # labels unused

    def optimizer(self, groups, phase):
        if self.cfg.ssl.optimizer == "lars":
            return LARS(groups, lr=phase.optim.lr, momentum=phase.optim.momentum)
        return build_optimizer(groups, phase.optim)

    def optimizer_name(self, phase) -> str:
        return "lars" if self.cfg.ssl.optimizer == "lars" else phase.optim.name

    def early_stopping(self, trainer) -> EarlyStopConfig:
        val = len(trainer.splits.val) >= trainer.global_batch
        return EarlyStopConfig(metric="val.contrastive_loss" if val else "train.loss", mode="min")

    def describe(self, trainer) -> str:
        return (f"SimCLR pretraining {self.cfg.model.name}: {len(trainer.splits.train)} train images (labels unused), "
                f"temperature {self.cfg.ssl.temperature:g}")

    @torch.no_grad()
    def evaluate(self, trainer, dataset) -> dict:
        """The contrastive loss on fixed views of ``dataset`` (the same every epoch), if it fills a global batch."""
        if len(dataset) < trainer.global_batch:
            return {}
        cfg, comm, ctx, model = self.cfg, trainer.comm, trainer.ctx, trainer.model
        sampler = RankBatchSampler(len(dataset), trainer.global_batch, comm.rank, comm.world_size, cfg.seed,
                                   cfg.train.max_steps_per_epoch)
        model.eval()
        total, steps = torch.zeros((), device=trainer.device), 0
        for step, (x, _) in enumerate(make_loader(dataset, sampler, cfg.data.num_workers, trainer.pin)):
            with autocast(ctx.device, ctx.amp_dtype):
                total += ctx.criterion(model(prepare(x, ctx, VAL_EPOCH, step)), None).detach()
            steps += 1
        return {"contrastive_loss": comm.mean(total.item() / max(1, steps))}

    def epoch_line(self, record: dict) -> str:
        val = record["val"].get("contrastive_loss")
        return f"contrastive loss: train {record['train']['loss']:.4f}" + ("" if val is None else f" val {val:.4f}")

    def final_weights(self, trainer) -> dict:
        return {"model": trainer.raw_model.backbone.classifier_state_dict(), "classes": trainer.classes,
                "ssl": to_dict(self.cfg)["ssl"]}

    def test(self, trainer) -> dict | None:
        """The linear probe on the frozen backbone (``ssl.linear_probe``)."""
        if not self.cfg.ssl.linear_probe:
            return None
        trainer.events.emit("on_stage", "test", trainer.global_step)
        return linear_probe(trainer.raw_model.backbone, trainer.splits, trainer.normalize, trainer.device,
                            trainer.comm, topk=self.cfg.train.topk, amp_dtype=trainer.ctx.amp_dtype)

    def add_results(self, summary: dict, tested: dict | None) -> dict:
        if tested:
            summary["metrics"] = {"val": {**tested["val"], **summary["metrics"]["val"]}, "test": tested["test"]}
        return summary


__all__ = ["SimCLRObjective"]
