"""Grad-CAM (Selvaraju et al., 2017) for any CNN hpcnn builds: where in the image the evidence for a class is.

The target layer's activations A (B,K,h,w) are captured with a forward hook and their gradients
dScore/dA with a tensor hook; each channel is weighted by its mean gradient, and
``relu(sum_k w_k A_k)`` is upsampled to the input size and scaled to [0, 1] per image.
The default target layer is the last backbone block that contains a convolution
(``models.parts.backbone_blocks``): the last spatial map before global pooling.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import ConfigError
from ..models.parts import backbone_blocks


def _has_conv(module: nn.Module) -> bool:
    return any(isinstance(m, nn.Conv2d) for m in module.modules())


def conv_blocks(model: nn.Module) -> list[str]:
    """Module names of the backbone blocks that contain a Conv2d, bottom to top.

    A block is named by its last part (conv + BatchNorm is one block: its BatchNorm output is the map).
    """
    names = []
    for prefixes in backbone_blocks(model):
        modules = [model.get_submodule(p.rstrip(".")) for p in prefixes]
        if any(_has_conv(m) for m in modules):
            names.append(prefixes[-1].rstrip("."))
    return names


def target_layer(model: nn.Module, name: str | None = None) -> tuple[str, nn.Module]:
    """(name, module) of the layer Grad-CAM reads: ``name`` if given, else the last convolutional block."""
    blocks = conv_blocks(model)
    if name is None:
        if not blocks:
            raise ConfigError(f"{type(model).__name__} has no convolutional layer: Grad-CAM needs a spatial map",
                              "model.name", "explain a CNN (simple_cnn, resnet_small, a torchvision CNN)")
        name = blocks[-1]
    modules = dict(model.named_modules())
    if name not in blocks and not (name and name in modules and _has_conv(modules[name])):
        raise ConfigError(f"no convolutional layer named {name!r} in {type(model).__name__}", "--layer",
                          f"choose one of the convolutional blocks {', '.join(blocks) or '(none)'}, "
                          "or any submodule containing a Conv2d")
    return name, modules[name]


def gradcam(model: nn.Module, images: torch.Tensor, targets: torch.Tensor | None = None,
            layer: str | None = None) -> tuple[torch.Tensor, torch.Tensor, str]:
    """Heatmaps (B,H,W) in [0,1] for normalised ``images`` (B,C,H,W), the logits, and the layer's name.

    ``targets``: the class explained per image (default: the predicted one). The model is put in
    eval mode for the call and restored afterwards; parameter gradients are left untouched.
    """
    name, module = target_layer(model, layer)
    captured: dict = {}

    def keep_grad(grad):
        captured["grad"] = grad

    def forward_hook(_module, _inputs, output):
        out = output[0] if isinstance(output, (tuple, list)) else output
        captured["act"] = out.detach().clone()  # the values now: an in-place ReLU may overwrite ``out`` next
        out.register_hook(keep_grad)

    was_training = model.training
    model.eval()
    handle = module.register_forward_hook(forward_hook)
    try:
        with torch.enable_grad():
            x = images.detach().requires_grad_(True)  # a graph through the activations even for frozen weights
            logits = model(x)
            if targets is None:
                targets = logits.argmax(1)
            score = logits.gather(1, targets.view(-1, 1).to(logits.device)).sum()
            torch.autograd.grad(score, x, retain_graph=False)  # fires the hook; no .grad on parameters
    finally:
        handle.remove()
        model.train(was_training)
    act, grad = captured["act"], captured["grad"].detach()
    if act.ndim != 4:
        raise ConfigError(f"layer {name!r} outputs shape {tuple(act.shape)}, not a (B,C,H,W) map", "--layer",
                          "choose a convolutional block")
    weights = grad.float().mean(dim=(2, 3), keepdim=True)
    cam = F.relu((weights * act.float()).sum(1, keepdim=True))
    cam = F.interpolate(cam, size=images.shape[-2:], mode="bilinear", align_corners=False).squeeze(1)
    peak = cam.flatten(1).amax(1).clamp_min(1e-12).view(-1, 1, 1)
    return (cam / peak).clamp_(0, 1), logits.detach(), name


__all__ = ["conv_blocks", "gradcam", "target_layer"]
