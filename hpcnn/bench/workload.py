"""The training step a benchmark times, set up by the Trainer's own functions for its first phase.

``hpcnn.train.setup`` builds the model (random weights: speed does not depend on them), memory
format, DDP/Horovod wrap, ``torch.compile``, parameter groups, optimizer and ``StepContext`` for the
config's objective (supervised or SimCLR), so ``train.loop.train_epoch`` runs the step a real job runs.
What differs is only where batches come from:

* ``synthetic``: one uint8 batch generated on the device, fed every step (no input pipeline);
* ``real``: the config's own pipeline (data source, DataLoader workers, GPU decoding when
  ``data.decode`` resolves to gpu), endlessly, epoch after epoch.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from ..config.phases import resolve_phases
from ..data.augment import Normalize
from ..train.freeze import frozen_batchnorm, select
from ..train.setup import PhaseStep, batch_sizes, new_model, phase_step, step_context


@dataclass
class Workload(PhaseStep):
    global_batch: int
    local_batch: int
    num_classes: int


def count_classes(data_cfg) -> int:
    """The number of classes without loading images (the head's size; it barely changes the speed)."""
    if data_cfg.classes:
        return len(data_cfg.classes)
    if data_cfg.source == "synthetic":
        from ..data import synthetic

        return len(synthetic.CLASSES)
    if data_cfg.source == "folder" and data_cfg.root:
        root = Path(data_cfg.root).expanduser()
        root = root / "train" if (root / "train").is_dir() else root
        if root.is_dir():
            return max(2, sum(1 for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")))
    return 10


def build_workload(cfg, comm, device: torch.device, num_classes: int, normalize: Normalize | None = None,
                   steps_per_window: int = 20) -> Workload:
    """Model, optimizer and step context for the config's first phase on this rank, by the Trainer's set-up."""
    from ..objectives import objective_for

    objective = objective_for(cfg)
    phase = resolve_phases(cfg)[0]
    global_batch, local_batch = batch_sizes(cfg, comm.world_size)
    model, _ = new_model(cfg, objective, device, num_classes, load_weights=False)  # speed needs no weights
    select(model, phase)
    c = cfg.data.channels
    normalize = (normalize or Normalize(torch.full((c,), 0.5), torch.full((c,), 0.25))).to(device)
    ctx = step_context(cfg, comm, device, objective, normalize, steps_per_window, global_batch,
                       cfg.data.pin_memory and device.type == "cuda")
    step = phase_step(cfg, comm, device, objective, model, phase, ctx, frozen_batchnorm(model, phase))
    return Workload(step.raw_model, step.wrapped, step.train_model, step.optimizer, step.ctx, global_batch,
                    local_batch, num_classes)


def synthetic_source(cfg, local_batch: int, num_classes: int, device: torch.device, seed: int = 0):
    """The same on-device uint8 batch forever: measures the step, not an input pipeline."""
    g = torch.Generator(device=device)
    g.manual_seed(seed)
    size, c = cfg.data.image_size, cfg.data.channels
    x = torch.randint(0, 256, (local_batch, c, size, size), dtype=torch.uint8, device=device, generator=g)
    y = torch.randint(0, num_classes, (local_batch,), device=device, generator=g)
    while True:
        yield x, y


def real_source(loader, sampler):
    """The config's own DataLoader, epoch after epoch (workers restart each epoch, as in training)."""
    epoch = 0
    while True:
        sampler.set_epoch(epoch)
        yield from loader
        epoch += 1


def gradient_bytes(model: torch.nn.Module) -> int:
    """Bytes one gradient allreduce moves per rank (trainable parameters, their own dtype)."""
    return sum(p.numel() * p.element_size() for p in model.parameters() if p.requires_grad)


def ddp_bucket_bytes(wrapped: torch.nn.Module) -> list[int]:
    """DDP's gradient bucket sizes in bytes (after the first step); [] for anything else."""
    logging_data = getattr(wrapped, "_get_ddp_logging_data", None)
    if logging_data is None:
        return []
    try:
        text = str(logging_data().get("bucket_sizes", ""))
        return [int(s) for s in text.replace(" ", "").split(",") if s]
    except Exception:  # private API: a missing field means "unknown", not a failed benchmark
        return []
