"""Grad-CAM (Selvaraju et al., 2017) for any CNN hpcnn builds: where in the image the evidence for a class is.

The target layer's activations A (B,K,h,w) are captured with a forward hook and their gradients
dScore/dA with a tensor hook; each channel is weighted by its mean gradient, and
``relu(sum_k w_k A_k)`` is upsampled to the input size and scaled to [0, 1] per image.
The default target layer is the last backbone block that contains a convolution
(``models.parts.backbone_blocks``): the last spatial map before global pooling.

A is the block's *rectified* map. Grad-CAM assumes A >= 0: on a map with negative values a negative
weight times a negative activation lights up places without evidence. hpcnn names a conv + BatchNorm
block by its BatchNorm, and every hpcnn model applies ``ReLU(inplace=True)`` to that output, so an
activation module (ReLU, LeakyReLU, GELU, ...) applied directly to the captured map is followed, in place
or not: A and dScore/dA are read after it. For an in-place activation the gradient hook is registered
after the in-place write (a hook registered before it would see the gradient of the value before it),
and A is copied then (the same tensor may be written in place again later, e.g. ``out += identity``).
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


# activations whose output (on the captured map) is the map Grad-CAM reads: elementwise, shape-keeping
ACTIVATIONS = (nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.PReLU, nn.ELU, nn.SELU, nn.CELU, nn.GELU, nn.SiLU, nn.Mish,
               nn.Hardswish, nn.Hardtanh)


class _MapCapture:
    """The map Grad-CAM reads and its gradient: the target's output, moved onto the output of any
    activation module applied directly to it (same tensor, unchanged since captured)."""

    def __init__(self):
        self.tensor = self.act = self.grad = self._hook = self._following = None
        self.version = -1

    def take(self, tensor: torch.Tensor) -> None:
        if self._hook is not None:
            self._hook.remove()  # the gradient of an earlier value of the map is not the one wanted
        self.tensor, self.version = tensor, tensor._version
        self.act = tensor.detach().clone()  # the values now: a later in-place write may change them
        self._hook = tensor.register_hook(self._keep_grad)

    def _keep_grad(self, grad: torch.Tensor) -> None:
        self.grad = grad

    def target_hook(self, _module, _inputs, output) -> None:
        self.take(output[0] if isinstance(output, (tuple, list)) else output)

    def before_activation(self, module, inputs) -> None:
        fresh = inputs and inputs[0] is self.tensor and inputs[0]._version == self.version
        self._following = module if fresh else None

    def after_activation(self, module, _inputs, output) -> None:
        if self._following is module and isinstance(output, torch.Tensor) and output.shape == self.tensor.shape:
            self.take(output)
        self._following = None


def gradcam(model: nn.Module, images: torch.Tensor, targets: torch.Tensor | None = None,
            layer: str | None = None) -> tuple[torch.Tensor, torch.Tensor, str]:
    """Heatmaps (B,H,W) in [0,1] for normalised ``images`` (B,C,H,W), the logits, and the layer's name.

    ``targets``: the class explained per image (default: the predicted one). The model is put in
    eval mode for the call and restored afterwards; parameter gradients are left untouched.
    """
    name, module = target_layer(model, layer)
    capture = _MapCapture()
    was_training = model.training
    model.eval()
    handles = [module.register_forward_hook(capture.target_hook)]
    for m in model.modules():
        if isinstance(m, ACTIVATIONS) and m is not module:
            handles += [m.register_forward_pre_hook(capture.before_activation),
                        m.register_forward_hook(capture.after_activation)]
    try:
        with torch.enable_grad():
            x = images.detach().requires_grad_(True)  # a graph through the activations even for frozen weights
            logits = model(x)
            if targets is None:
                targets = logits.argmax(1)
            score = logits.gather(1, targets.view(-1, 1).to(logits.device)).sum()
            torch.autograd.grad(score, x, retain_graph=False)  # fires the hook; no .grad on parameters
    finally:
        for handle in handles:
            handle.remove()
        if capture._hook is not None:
            capture._hook.remove()
        model.train(was_training)
    act, grad = capture.act, capture.grad.detach()
    if act.ndim != 4:
        raise ConfigError(f"layer {name!r} outputs shape {tuple(act.shape)}, not a (B,C,H,W) map", "--layer",
                          "choose a convolutional block")
    weights = grad.float().mean(dim=(2, 3), keepdim=True)
    cam = F.relu((weights * act.float()).sum(1, keepdim=True))
    cam = F.interpolate(cam, size=images.shape[-2:], mode="bilinear", align_corners=False).squeeze(1)
    peak = cam.flatten(1).amax(1).clamp_min(1e-12).view(-1, 1, 1)
    return (cam / peak).clamp_(0, 1), logits.detach(), name


__all__ = ["ACTIVATIONS", "conv_blocks", "gradcam", "target_layer"]
