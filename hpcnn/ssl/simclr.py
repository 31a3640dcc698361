"""SimCLR's parts: two augmented views, the backbone + projection head, NT-Xent over all ranks, LARS.

Chen et al. 2020, "A Simple Framework for Contrastive Learning of Visual Representations":
each image is augmented twice; the network (backbone, then a small MLP, the projection
head) maps both views to unit vectors, and the NT-Xent loss asks every view to pick its
partner out of all 2B-1 other views of the *global* batch. The negatives from other ranks
come through ``hpcnn.dist.gather.all_gather_grad``, whose backward sends each rank the
gradient of its own embeddings, so N ranks with B/N images each compute the loss and the
gradients of one rank with B images (without BatchNorm, or with SyncBatchNorm on GPUs).

The views follow ``hpcnn.data.augment``: every random parameter is drawn for the whole global
batch from a generator seeded by (seed, epoch, step), and each rank takes its slice.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ..data.augment import affine_warp, color_jitter, step_generator
from ..dist.gather import all_gather_grad
from ..models.parts import head_name

VIEW_SEEDS = (104_729, 224_737)  # each view has its own stream; any fixed distinct numbers do


# ---------------------------------------------------------------------------------------------- views
@dataclass(frozen=True)
class ViewSettings:
    """How strongly each view is augmented: SimCLR's recipe, with the crop suited to small object-centred
    images (SimCLR's ImageNet crop is area 0.08..1 at aspect 3/4..4/3; on the synthetic galaxies, whose
    classes differ by axis ratio, the aspect change alone costs 5 probe points, see docs/ssl.md)."""
    crop_min_scale: float = 0.5    # random resized crop: area fraction in [crop_min_scale, 1]
    max_aspect: float = 1.0        # crop aspect ratio in [1/max_aspect, max_aspect]; 1 keeps shapes
    hflip: bool = True
    vflip: bool = False
    rotation: float = 0.0          # degrees, ±; 180 for images without an up (sky, microscopy)
    color_jitter: float = 0.4      # brightness / contrast / saturation strength
    jitter_p: float = 0.8          # probability that a view is colour-jittered
    grayscale_p: float = 0.2       # probability of a grey view (3-channel images)
    blur_p: float = 0.5            # probability of a Gaussian blur
    blur_sigma: tuple = (0.1, 1.0)  # blur sigma range in pixels per 32 pixels of image size

    @classmethod
    def from_config(cls, cfg) -> "ViewSettings":
        """Rotation and vertical flips from ``data.augment`` (what the domain is invariant to); the
        SimCLR strengths from ``ssl``; the rest as the defaults above."""
        ssl, aug = cfg.ssl, cfg.data.augment
        return cls(crop_min_scale=ssl.crop_min_scale, max_aspect=ssl.max_aspect, vflip=bool(aug.vflip),
                   rotation=float(aug.rotation), color_jitter=ssl.color_jitter, grayscale_p=ssl.grayscale,
                   blur_p=ssl.blur)


class TwoViews:
    """(b,C,H,W) floats in [0,1] -> two independently augmented views, deterministic in (seed, epoch, step)."""

    def __init__(self, settings: ViewSettings, seed: int):
        self.s, self.seed = settings, seed

    def params(self, n: int, g: torch.Generator) -> dict[str, torch.Tensor]:
        """Random parameters of ``n`` views; a fixed draw order keeps runs reproducible."""
        s = self.s
        u = lambda: torch.rand(n, generator=g)  # noqa: E731
        area = s.crop_min_scale + (1 - s.crop_min_scale) * u()
        ratio = torch.exp((u() * 2 - 1) * math.log(s.max_aspect))
        p = {"sx": torch.sqrt(area * ratio).clamp(max=1.0), "sy": torch.sqrt(area / ratio).clamp(max=1.0)}
        p["tx"], p["ty"] = (u() * 2 - 1) * (1 - p["sx"]), (u() * 2 - 1) * (1 - p["sy"])
        p["angle"] = (u() * 2 - 1) * math.radians(s.rotation)
        p["hflip"] = (u() < 0.5) & s.hflip
        p["vflip"] = (u() < 0.5) & s.vflip
        jitter = (u() < s.jitter_p).float() * s.color_jitter
        p["bright"], p["contrast"], p["sat"] = (1 + (u() * 2 - 1) * jitter for _ in range(3))
        p["gray"] = u() < s.grayscale_p
        p["sigma"] = torch.where(u() < s.blur_p, s.blur_sigma[0] + (s.blur_sigma[1] - s.blur_sigma[0]) * u(),
                                 torch.zeros(n))
        return p

    def __call__(self, x: torch.Tensor, epoch: int, step: int, offset: int, global_batch: int):
        """``offset``: this rank's first index in the global batch of ``global_batch`` images."""
        views = []
        for view_seed in VIEW_SEEDS:
            full = self.params(global_batch, step_generator(self.seed * 7 + view_seed, epoch, step))
            p = {k: v[offset:offset + x.shape[0]].to(x.device) for k, v in full.items()}
            views.append(self.apply(x, p))
        return views[0], views[1]

    def apply(self, x: torch.Tensor, p: dict) -> torch.Tensor:
        # crop, rotation and flips as one warp (a flip is a negative scale), then the colour jitter
        fx = 1 - 2 * p["hflip"].to(x.dtype)
        fy = 1 - 2 * p["vflip"].to(x.dtype)
        x = affine_warp(x, p["angle"], p["sx"] * fx, p["sy"] * fy, p["tx"], p["ty"])
        x, gray = color_jitter(x, p["bright"], p["contrast"], p["sat"])
        if gray is not None:
            x = torch.where(p["gray"].view(-1, 1, 1, 1), gray.expand_as(x), x)
        if self.s.blur_p > 0:
            scale = x.shape[-1] / 32
            x = gaussian_blur(x.clamp(0, 1), p["sigma"] * scale, self.s.blur_sigma[1] * scale)
        return x.clamp(0, 1)


def gaussian_blur(x: torch.Tensor, sigma: torch.Tensor, max_sigma: float) -> torch.Tensor:
    """Per-image separable Gaussian blur (``sigma`` <= ``max_sigma`` pixels); sigma 0 leaves an image as it is.

    The kernel size comes from ``max_sigma``, not from the tensor: no host synchronisation.
    """
    b, c, h, w = x.shape
    radius = min(max(1, math.ceil(3 * max_sigma)), (min(h, w) - 1) // 2)
    pos = torch.arange(-radius, radius + 1, device=x.device, dtype=x.dtype)
    s = sigma.to(x.dtype).clamp_min(1e-3).view(-1, 1)
    k = torch.exp(-pos.view(1, -1) ** 2 / (2 * s * s))
    k = torch.where(s > 2e-3, k, (pos == 0).to(x.dtype).view(1, -1))  # sigma 0: identity kernel
    k = (k / k.sum(1, keepdim=True)).repeat_interleave(c, 0)           # (b*c, taps)
    y = F.pad(x.reshape(1, b * c, h, w), (radius, radius, radius, radius), mode="reflect")
    y = F.conv2d(y, k.view(b * c, 1, 1, -1), groups=b * c)
    y = F.conv2d(y, k.view(b * c, 1, -1, 1), groups=b * c)
    return y.view(b, c, h, w)


# ---------------------------------------------------------------------------------------------- model
class Backbone(nn.Module):
    """A classifier from ``hpcnn.models`` with its head swapped for Identity; feature maps are pooled.

    The head is parked (not a submodule: it neither trains nor syncs), so ``classifier_state_dict``
    gives the complete classifier, original head included, for ``model.weights: RUN_DIR``.
    """

    def __init__(self, classifier: nn.Module, in_channels: int, image_size: int):
        super().__init__()
        self.head_name = head_name(classifier)
        self._parked = [getattr(classifier, self.head_name)]
        setattr(classifier, self.head_name, nn.Identity())
        self.net = classifier
        self.eval()
        with torch.no_grad():
            self.dim = self(torch.zeros(2, in_channels, image_size, image_size)).shape[1]
        self.train()  # a new module trains

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.net(x)
        return y.flatten(2).mean(-1) if y.dim() > 2 else y

    def classifier_state_dict(self) -> dict:
        """The classifier's state_dict (head from initialisation), on the CPU."""
        state = {k: v.detach().cpu().clone() for k, v in self.net.state_dict().items()}
        head = self._parked[0].state_dict()
        state.update({f"{self.head_name}.{k}": v.detach().cpu().clone() for k, v in head.items()})
        return state


class SimCLR(nn.Module):
    """backbone -> projection head (Linear, ReLU, Linear): the embeddings NT-Xent compares."""

    def __init__(self, backbone: Backbone, hidden: int, out: int):
        super().__init__()
        self.backbone = backbone
        self.projector = nn.Sequential(nn.Linear(backbone.dim, hidden), nn.ReLU(inplace=True), nn.Linear(hidden, out))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.projector(self.backbone(x))


# ---------------------------------------------------------------------------------------------- loss
def nt_xent(z1: torch.Tensor, z2: torch.Tensor, temperature: float, comm=None) -> torch.Tensor:
    """NT-Xent of this rank's pairs (z1[i], z2[i]) against the views of every rank.

    The mean over this rank's 2b anchors; its mean over ranks (what DDP's gradient averaging
    optimises) is the loss of the global batch, anchored on all 2B views.
    """
    b = z1.shape[0]
    local = torch.cat([z1, z2])
    if local.dtype in (torch.float16, torch.bfloat16):               # the softmax wants float32 under AMP
        local = local.float()
    local = F.normalize(local, dim=1)                                # (2b, d): this rank's anchors
    world, rank = (1, 0) if comm is None else (comm.world_size, comm.rank)
    gathered = all_gather_grad(local, comm)                          # (world*2b, d), rank-major
    d = gathered.shape[1]
    candidates = gathered.view(world, 2, b, d).transpose(0, 1).reshape(2 * world * b, d)  # all z1, then all z2
    big = world * b
    mine = torch.arange(b, device=local.device) + rank * b
    own = torch.cat([mine, mine + big])                               # where each anchor sits itself
    partner = torch.cat([mine + big, mine])
    with torch.autocast(local.device.type, enabled=False):
        logits = local @ candidates.T / temperature                  # (2b, 2B)
        mask = torch.zeros_like(logits, dtype=torch.bool)
        mask[torch.arange(2 * b, device=local.device), own] = True
        return F.cross_entropy(logits.masked_fill(mask, float("-inf")), partner)


# ---------------------------------------------------------------------------------------------- LARS
class LARS(torch.optim.Optimizer):
    """SGD with momentum and layer-wise trust ratios (You et al. 2017), as SimCLR trains with it.

    Weight decay and the trust ratio apply to weights (ndim > 1) only, not to biases and norms.
    """

    def __init__(self, params, lr: float, momentum: float = 0.9, weight_decay: float = 0.0, eta: float = 0.001):
        super().__init__(params, {"lr": lr, "momentum": momentum, "weight_decay": weight_decay, "eta": eta})

    @torch.no_grad()
    def step(self, closure=None):
        loss = closure() if closure is not None else None
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                d = p.grad
                if p.ndim > 1:
                    d = d.add(p, alpha=group["weight_decay"])
                    w_norm, d_norm = torch.linalg.vector_norm(p), torch.linalg.vector_norm(d)
                    trust = torch.where((w_norm > 0) & (d_norm > 0), group["eta"] * w_norm / d_norm,
                                        torch.ones_like(w_norm))
                    d = d * trust
                state = self.state[p]
                if "momentum_buffer" not in state:
                    state["momentum_buffer"] = d.clone()
                else:
                    state["momentum_buffer"].mul_(group["momentum"]).add_(d)
                p.add_(state["momentum_buffer"], alpha=-group["lr"])
        return loss


__all__ = ["LARS", "Backbone", "SimCLR", "TwoViews", "ViewSettings", "gaussian_blur", "nt_xent"]
