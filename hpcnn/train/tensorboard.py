"""TensorBoard: training and validation scalars, and (config section ``tensorboard``) more.

- the model graph, traced once on one validation batch at the start (on by default: cheap, once);
- weight and gradient histograms every ``histograms_every`` epochs (off by default). The gradients are
  the ones the optimizer last stepped with: a step pre-hook keeps a reference to them (no copy) during
  an epoch that ends with histograms, since the loop sets them to None after every step;
- the embedding projector: the penultimate features (the input of the head's last Linear layer; the
  head as ``models.parts.head_name`` finds it) for up to ``embeddings_max`` test images, with the class
  and the predicted class as metadata and the images as a sprite; at the end of the run (best weights)
  or after a chosen epoch.

Only rank 0 writes and computes; nothing here is collective, draws random numbers, or changes the
weights, BatchNorm statistics or module modes the run trains with.
"""
from __future__ import annotations

import contextlib
import io
import logging
import warnings

import torch
import torch.nn.functional as F
from torch import nn

from ..data.augment import model_input
from ..data.loaders import ShardBatchSampler, make_loader
from ..models.parts import head_name
from .checkpoint import first_line
from .events import Callback, LogPoint
from .logs import TensorBoard
from .metrics import scalar_metrics

log = logging.getLogger("hpcnn.train")
THUMBNAIL = 32  # sprite tiles are at most this many pixels a side


class TensorBoardWriter(Callback):
    """Rank 0's event files in RUN_DIR/tb (``tensorboard --logdir runs/``)."""

    def __init__(self):
        self.tb = None
        self.gradients: GradientKeeper | None = None

    @property
    def writer(self):
        return self.tb.writer if self.tb else None

    def on_run_start(self, trainer) -> None:
        cfg, self.opts = trainer.cfg, trainer.cfg.tensorboard
        # on resume, drop what the stopped run logged after its checkpoint; what it logged at the
        # checkpoint's own step (the epoch's last log point, validation, histograms) came before it
        purge = trainer.global_step + 1 if trainer.resumed_from is not None else None
        self.tb = TensorBoard(trainer.run_dir / "tb", cfg.train.tensorboard and trainer.is_main, purge)
        if trainer.is_main and not cfg.train.tensorboard and (self.opts.histograms_every or self.opts.embeddings):
            log.warning("tensorboard.histograms_every / tensorboard.embeddings are ignored: train.tensorboard is false")
        if self.writer and self.opts.graph and trainer.resumed_from is None:
            write_graph(self.writer, trainer)

    def on_phase_start(self, trainer, phase) -> None:
        if self.writer and self.opts.histograms_every and trainer.optimizer is not None:
            self.gradients = GradientKeeper(trainer.raw_model, trainer.optimizer)
            self.gradients.active = self._histograms_due(trainer.position.epoch)

    def on_log(self, trainer, p: LogPoint) -> None:
        self.tb.scalars("train", {"loss": p.loss, "lr": p.lr, "images_per_second": p.images_per_second},
                        p.global_step)

    def on_epoch_end(self, trainer, record: dict) -> None:
        epoch, step = record["epoch"], (record["epoch"] + 1) * trainer.steps_per_epoch
        self.tb.scalars("val", scalar_metrics(record["val"]), step)
        if not self.writer:
            return
        if self._histograms_due(epoch):
            _safely("histograms", write_histograms, self.writer, trainer.raw_model, self.gradients, step)
        if self.gradients is not None:
            self.gradients.active = self._histograms_due(epoch + 1)
        if self.opts.embeddings and self.opts.embeddings_epoch == epoch + 1:
            _safely("embeddings", write_embeddings, self.writer, trainer, step, self.opts.embeddings_max)

    def on_phase_end(self, trainer, phase) -> None:
        if self.gradients is not None:
            self.gradients.remove()
            self.gradients = None

    def on_run_end(self, trainer, summary: dict) -> None:
        if self.writer and self.opts.embeddings and self.opts.embeddings_epoch is None \
                and summary.get("status") not in ("preempted", "paused"):  # embeddings of finished runs only
            _safely("embeddings", write_embeddings, self.writer, trainer, trainer.global_step,
                    self.opts.embeddings_max)
        self.on_phase_end(trainer, None)
        self.tb.close()

    def _histograms_due(self, epoch: int) -> bool:
        every = self.opts.histograms_every
        return bool(every) and (epoch + 1) % every == 0


def _safely(what: str, write, *args) -> None:
    """A picture for TensorBoard is never worth the run: a failure is one warning line."""
    try:
        write(*args)
    except Exception as err:
        log.warning("TensorBoard %s skipped: %s: %s", what, type(err).__name__, first_line(err))


class GradientKeeper:
    """References to the gradients of the latest optimizer step, while ``active`` (a step pre-hook)."""

    def __init__(self, model: nn.Module, optimizer):
        names = {id(p): n for n, p in model.named_parameters()}
        self.params = [(names[id(p)], p) for group in optimizer.param_groups for p in group["params"]
                       if id(p) in names]
        self.active = False
        self.grads: list[tuple[str, torch.Tensor]] = []
        self.handle = optimizer.register_step_pre_hook(self._keep)

    def _keep(self, optimizer, args, kwargs) -> None:
        if self.active:
            self.grads = [(n, p.grad) for n, p in self.params if p.grad is not None]

    def remove(self) -> None:
        self.handle.remove()
        self.grads = []


def write_histograms(writer, model: nn.Module, gradients: GradientKeeper | None, step: int) -> None:
    """``weights/NAME`` for every parameter, ``gradients/NAME`` for those the last step updated."""
    for name, param in model.named_parameters():
        writer.add_histogram(f"weights/{name}", param.detach().float(), step)
    for name, grad in (gradients.grads if gradients else []):
        writer.add_histogram(f"gradients/{name}", grad.detach().float(), step)
    if gradients:
        gradients.grads = []


@contextlib.contextmanager
def _eval_mode(model: nn.Module):
    """Inference mode for a side computation; every module's own mode restored afterwards."""
    modes = [(m, m.training) for m in model.modules()]
    model.eval()
    try:
        with torch.no_grad():
            yield model
    finally:
        for module, training in modes:
            module.training = training


def _prepare(trainer, images: torch.Tensor) -> torch.Tensor:
    return model_input(images, trainer.normalize, trainer.device, trainer.cfg.train.channels_last)


def write_graph(writer, trainer) -> None:
    """The model graph from a trace on two validation images; one warning line when it does not trace."""
    model = trainer.raw_model
    quiet = io.StringIO()  # the tracer prints its own error text to stdout before raising
    try:
        n = min(2, len(trainer.splits.val))
        loader = make_loader(trainer.splits.val.subset(range(n)), ShardBatchSampler(n, max(n, 1), 0, 1), 0, False)
        images, _ = next(iter(loader))
        with _eval_mode(model), warnings.catch_warnings(), contextlib.redirect_stdout(quiet):
            warnings.simplefilter("ignore")  # TracerWarnings and jit's deprecation notice: not the user's business
            writer.add_graph(model, _prepare(trainer, images))
    except Exception as err:  # tracing fails in many ways for dynamic models; the run must not
        log.warning("TensorBoard graph skipped: %s does not trace (%s)", type(model).__name__, first_line(err))


def feature_layer(model: nn.Module) -> tuple[nn.Module, bool]:
    """(module, whether its output rather than its input is the feature vector).

    A model with a ``backbone`` (SimCLR) is represented by the backbone's output; a classifier by
    the input of the last Linear layer of its head (``models.parts.head_name``), i.e. what the final
    layer separates linearly; a head without a Linear layer by its own input.
    """
    backbone = getattr(model, "backbone", None)
    if isinstance(backbone, nn.Module):
        return backbone, True
    head = getattr(model, head_name(model))
    linears = [m for m in head.modules() if isinstance(m, nn.Linear)]
    return (linears[-1] if linears else head), False


def _vector(t: torch.Tensor) -> torch.Tensor:
    """(B, D) on the CPU: feature maps are averaged over their positions, as global pooling would."""
    t = t.detach().float()
    return (t.flatten(2).mean(-1) if t.ndim > 2 else t.flatten(1)).cpu()


def penultimate(trainer, dataset, batch: int = 64):
    """(features, labels, predictions or None, images) of ``dataset``, in order (unreadable files dropped)."""
    model = trainer.raw_model
    module, use_output = feature_layer(model)
    captured: list[torch.Tensor] = []
    handle = module.register_forward_hook(
        lambda m, inputs, output: captured.append(_vector(output if use_output else inputs[0])))
    outputs, labels, images = [], [], []
    try:
        with _eval_mode(model):
            for x, y in make_loader(dataset, ShardBatchSampler(len(dataset), batch, 0, 1), 0, False):
                if not len(y):
                    continue
                outputs.append(model(_prepare(trainer, x)).float().cpu())
                labels.append(y)
                images.append(x)
    finally:
        handle.remove()
    logits = torch.cat(outputs)
    classifier = trainer.cfg.ssl.method == "none" and logits.ndim == 2 and logits.shape[1] == len(trainer.classes)
    return (torch.cat(captured), torch.cat(labels), logits.argmax(1) if classifier else None, torch.cat(images))


def thumbnails(images: torch.Tensor) -> torch.Tensor:
    """uint8 (N,C,H,W) -> float (N,C,h,w) in [0, 1], at most THUMBNAIL pixels a side, for the sprite."""
    x = images.float().div(255.0)
    if x.shape[-1] > THUMBNAIL or x.shape[-2] > THUMBNAIL:
        x = F.interpolate(x, size=(THUMBNAIL, THUMBNAIL), mode="bilinear", antialias=True, align_corners=False)
    return x.clamp(0, 1)


def write_embeddings(writer, trainer, step: int, limit: int) -> None:
    """The projector's data for the first ``limit`` images of the test split (val without one)."""
    test = trainer.splits.test
    name, split = ("test", test) if test is not None and len(test) else ("val", trainer.splits.val)
    subset = split.subset(range(min(limit, len(split))))
    features, labels, predicted, images = penultimate(trainer, subset)
    classes = trainer.classes
    if predicted is None:
        metadata, header = [classes[int(y)] for y in labels], None
    else:
        metadata = [[classes[int(y)], classes[int(p)]] for y, p in zip(labels, predicted)]
        header = ["class", "predicted"]
    writer.add_embedding(features, metadata=metadata, metadata_header=header, label_img=thumbnails(images),
                         global_step=step, tag=f"{name}_features")
    log.info("TensorBoard projector: %d %s images, %d features each", len(labels), name, features.shape[1])


__all__ = ["GradientKeeper", "TensorBoardWriter", "feature_layer", "penultimate", "write_embeddings",
           "write_graph", "write_histograms"]
