"""Deterministic, rank-aware batching.

Training: one permutation per (seed, epoch); global step s takes samples
perm[s*B:(s+1)*B] and rank r the r-th contiguous slice of those. Resuming at step k just
starts there, and the global batch is the same whatever the number of ranks.
Evaluation: each rank takes a contiguous shard, no padding, so gathered metrics count
every sample exactly once.
"""
from __future__ import annotations

import torch
from torch.utils.data import DataLoader

from ..errors import ConfigError
from .imagesets import collate


class RankBatchSampler:
    def __init__(self, n: int, global_batch: int, rank: int, world_size: int, seed: int, max_steps: int = 0):
        if global_batch % world_size:
            raise ConfigError(f"global batch {global_batch} is not divisible by {world_size} ranks",
                              "train.batch_size", f"use a multiple of {world_size}")
        if n < global_batch:
            raise ConfigError(f"the training split has {n} images, fewer than one global batch ({global_batch})",
                              "train.batch_size", "lower the batch size or add data")
        self.n, self.global_batch, self.rank, self.world_size, self.seed = n, global_batch, rank, world_size, seed
        self.local_batch = global_batch // world_size
        steps = n // global_batch  # drop_last: every step sees a full global batch
        self.steps_per_epoch = min(steps, max_steps) if max_steps else steps
        self.epoch, self.start_step = 0, 0

    def set_epoch(self, epoch: int, start_step: int = 0) -> None:
        self.epoch, self.start_step = epoch, start_step

    def __len__(self) -> int:
        return self.steps_per_epoch - self.start_step

    def __iter__(self):
        perm = torch.randperm(self.n, generator=torch.Generator().manual_seed(self.seed * 7919 + self.epoch))
        lo = self.rank * self.local_batch
        for s in range(self.start_step, self.steps_per_epoch):
            chunk = perm[s * self.global_batch:(s + 1) * self.global_batch]
            yield chunk[lo:lo + self.local_batch].tolist()


class ShardBatchSampler:
    def __init__(self, n: int, batch: int, rank: int, world_size: int):
        self.lo, self.hi = n * rank // world_size, n * (rank + 1) // world_size
        self.batch = batch

    def __len__(self) -> int:
        return -(-(self.hi - self.lo) // self.batch)

    def __iter__(self):
        for i in range(self.lo, self.hi, self.batch):
            yield list(range(i, min(i + self.batch, self.hi)))


def make_loader(dataset, batch_sampler, num_workers: int, pin_memory: bool, collate_fn=collate) -> DataLoader:
    # A private generator: creating an iterator must not draw from the global RNG, or a run
    # resumed mid-epoch would see different dropout masks than an uninterrupted one.
    generator = torch.Generator().manual_seed(getattr(batch_sampler, "seed", 0) + getattr(batch_sampler, "epoch", 0))
    return DataLoader(dataset, batch_sampler=batch_sampler, num_workers=num_workers, collate_fn=collate_fn,
                      generator=generator, pin_memory=pin_memory, persistent_workers=False,
                      prefetch_factor=4 if num_workers > 0 else None)
