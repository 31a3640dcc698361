"""One factory: config -> nn.Module, with the chosen weight initialisation and initial weights."""
from __future__ import annotations

from torch import nn

from ..config.model_names import BUILTIN_MODELS
from .mlp import mlp
from .resnet_small import resnet_small
from .simple_cnn import simple_cnn
from .torchvision_models import torchvision_model
from .weights import initial_weights


_INITIALISERS = {"kaiming": lambda w: nn.init.kaiming_normal_(w, mode="fan_out", nonlinearity="relu"),
                 "xavier": nn.init.xavier_uniform_, "orthogonal": nn.init.orthogonal_}  # model.init (schema-checked)


def _init_weights(model: nn.Module, scheme: str) -> None:
    if scheme == "default":
        return
    for m in model.modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            _INITIALISERS[scheme](m.weight)
            if m.bias is not None:
                nn.init.zeros_(m.bias)


def build_model(model_cfg, num_classes: int, in_channels: int, image_size: int,
                classes: list | None = None) -> tuple[nn.Module, dict | None]:
    """The model and the report of loading ``model.weights`` into it (None: random initialisation).

    The head is sized for ``num_classes`` first; the weights then fill every tensor whose name and
    shape match (``loading.load_matching``), so an old head with another number of classes is skipped.
    """
    name = model_cfg.name
    if name == "mlp":
        model = mlp(num_classes, in_channels, image_size, model_cfg.hidden, model_cfg.dropout, model_cfg.batch_norm)
    elif name == "simple_cnn":
        model = simple_cnn(num_classes, in_channels, model_cfg.channels, model_cfg.hidden, model_cfg.dropout,
                           model_cfg.batch_norm)
    elif name == "resnet_small":
        model = resnet_small(num_classes, in_channels, model_cfg.width, model_cfg.depth, model_cfg.dropout)
    else:
        model = torchvision_model(name, num_classes, in_channels, model_cfg.weights)
    if name in BUILTIN_MODELS:
        _init_weights(model, model_cfg.init)
    return model, initial_weights(model, model_cfg, classes)


def create_model(model_cfg, num_classes: int, in_channels: int, image_size: int) -> nn.Module:
    return build_model(model_cfg, num_classes, in_channels, image_size)[0]
