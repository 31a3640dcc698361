"""Batch-wise augmentation and normalisation on the training device.

Random parameters are drawn for the whole *global* batch from a generator seeded by
(seed, epoch, step) and each rank takes its slice, so:
- a run resumed mid-epoch sees exactly the augmentations it would have seen;
- 1 rank with batch B and N ranks with B/N each augment every sample identically;
- nothing touches the global RNG, and the GPU does the work (no CPU starvation).
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def step_generator(seed: int, epoch: int, step: int) -> torch.Generator:
    return torch.Generator().manual_seed((seed * 1_000_003 + epoch * 100_003 + step) % (2**63 - 1))


class Normalize:
    """uint8 (B,C,H,W) -> float, scaled to [0,1] then standardised per channel."""

    def __init__(self, mean: torch.Tensor, std: torch.Tensor):
        self.mean = mean.view(1, -1, 1, 1)
        self.std = std.clamp_min(1e-3).view(1, -1, 1, 1)

    @classmethod
    def from_sample(cls, images: torch.Tensor, enabled: bool = True) -> "Normalize":
        c = images.shape[1]
        if not enabled or images.numel() == 0:
            return cls(torch.zeros(c), torch.ones(c))
        x = images.float() / 255.0
        return cls(x.mean(dim=(0, 2, 3)), x.std(dim=(0, 2, 3)))

    def to(self, device) -> "Normalize":
        self.mean, self.std = self.mean.to(device), self.std.to(device)
        return self

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        if x.dtype == torch.uint8:
            x = x.float().div_(255.0)
        return (x - self.mean) / self.std


def to_device(params: dict[str, torch.Tensor], device: torch.device) -> dict[str, torch.Tensor]:
    """The per-sample parameters on the device in one pinned, asynchronous copy.

    A plain ``.to("cuda")`` from pageable memory synchronises the stream: one per parameter
    would stall every step. float32 values and 0/1 flags survive the float32 packing exactly.
    """
    if device.type != "cuda":
        return {k: v.to(device) for k, v in params.items()}
    packed = torch.stack([v.float() for v in params.values()]).pin_memory().to(device, non_blocking=True)
    return {k: packed[i].bool() if v.dtype == torch.bool else packed[i] for i, (k, v) in enumerate(params.items())}


def model_input(images: torch.Tensor, normalize, device, channels_last: bool = False, non_blocking: bool = False,
                augment=None) -> torch.Tensor:
    """The one conversion of a uint8 (B,C,H,W) batch into what a model takes: on the device, floats in [0,1],
    ``augment``-ed (a callable on such floats, or None), standardised, channels_last if asked."""
    x = images.to(device, non_blocking=non_blocking).float().div_(255.0)
    if augment is not None:
        x = augment(x)
    x = normalize(x)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    return x


def affine_warp(x: torch.Tensor, angle: torch.Tensor, sx: torch.Tensor, sy: torch.Tensor, tx: torch.Tensor,
                ty: torch.Tensor) -> torch.Tensor:
    """Rotation by ``angle``, scale (sx, sy; negative flips) and shift (tx, ty) per image, as one bilinear warp
    (output coordinates -> input coordinates, reflection at the borders): random-resized-crop and its kin."""
    cos, sin = torch.cos(angle), torch.sin(angle)
    theta = torch.stack([torch.stack([cos * sx, -sin * sy, tx], -1),
                         torch.stack([sin * sx, cos * sy, ty], -1)], 1).to(x.dtype)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="reflection", align_corners=False)


def color_jitter(x: torch.Tensor, bright: torch.Tensor, contrast: torch.Tensor, sat: torch.Tensor):
    """Brightness, contrast and (3-channel images) saturation factors per image, unclamped.

    Returns (jittered images, the grey image the saturation mixed with, or None for other channel counts).
    """
    col = lambda t: t.to(x.dtype).view(-1, 1, 1, 1)  # noqa: E731
    x = x * col(bright)
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    x = (x - mean) * col(contrast) + mean
    if x.shape[1] != 3:
        return x, None
    gray = 0.299 * x[:, 0:1] + 0.587 * x[:, 1:2] + 0.114 * x[:, 2:3]
    return (x - gray) * col(sat) + gray, gray


class BatchAugment:
    """Flips, rotation, random-resized-crop (one affine warp) and colour jitter."""

    def __init__(self, aug_cfg, seed: int):
        self.cfg, self.seed = aug_cfg, seed
        c = aug_cfg
        self.enabled = bool(c.hflip or c.vflip or c.rotation or c.random_resized_crop or c.color_jitter)

    def _params(self, n: int, g: torch.Generator) -> dict[str, torch.Tensor]:
        c = self.cfg
        u = lambda: torch.rand(n, generator=g)  # noqa: E731 - fixed draw order keeps runs reproducible
        p = {"hflip": u() < 0.5, "vflip": u() < 0.5, "angle": (u() * 2 - 1) * math.radians(c.rotation)}
        lo = c.random_resized_crop or 1.0
        area = lo + (1 - lo) * u()
        ratio = torch.exp((u() * 2 - 1) * math.log(4 / 3))
        p["sx"] = torch.sqrt(area * ratio).clamp(max=1.0)
        p["sy"] = torch.sqrt(area / ratio).clamp(max=1.0)
        p["tx"] = (u() * 2 - 1) * (1 - p["sx"])
        p["ty"] = (u() * 2 - 1) * (1 - p["sy"])
        for k in ("bright", "contrast", "sat"):
            p[k] = 1 + (u() * 2 - 1) * c.color_jitter
        return p

    def __call__(self, x: torch.Tensor, epoch: int, step: int, offset: int, global_batch: int) -> torch.Tensor:
        """x: float (b,C,H,W) in [0,1]; ``offset`` is this rank's first index in the global batch."""
        if not self.enabled or x.shape[0] == 0:
            return x
        c = self.cfg
        full = self._params(global_batch, step_generator(self.seed, epoch, step))
        p = to_device({k: v[offset:offset + x.shape[0]] for k, v in full.items()}, x.device)
        for flip, dim in (("hflip", -1), ("vflip", -2)):
            if getattr(c, flip):
                x = torch.where(p[flip].view(-1, 1, 1, 1), x.flip(dim), x)
        if c.rotation or c.random_resized_crop:
            x = affine_warp(x, p["angle"], p["sx"], p["sy"], p["tx"], p["ty"])
        if c.color_jitter:
            x = color_jitter(x, p["bright"], p["contrast"], p["sat"])[0].clamp(0, 1)
        return x
