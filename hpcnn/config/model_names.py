"""Model names a config may use, checkable without torch (the login node may lack it).

The torchvision names come from a generated data file (``hpcnn.config.torchvision_names``), never
from torchvision itself, so the check answers the same on a login node with or without torch.
"""
from __future__ import annotations

import difflib

from ..errors import ConfigError
from .torchvision_names import model_names as torchvision_models

BUILTIN_MODELS = ("mlp", "simple_cnn", "resnet_small")


def check_model_name(name: str, where: str) -> None:
    known = BUILTIN_MODELS + torchvision_models()
    if name in known:
        return
    close = difflib.get_close_matches(name, known, n=1, cutoff=0.6)
    hint = (f"did you mean '{close[0]}'?" if close else
            "built-in: " + ", ".join(BUILTIN_MODELS) + "; or a torchvision classification model such as resnet18")
    raise ConfigError(f"unknown model name 'model.name: {name}'", where, hint)
