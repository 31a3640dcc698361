"""torchvision's model names and weights files, for the login node: a generated data file, never torchvision.

A job config names a torchvision model (``model.name: resnet18``) and maybe its weights
(``model.weights: IMAGENET1K_V1``); the login node checks both, and finds the weights' cache file, before
anything is queued, whether or not torch is installed there. The names come from ``torchvision_names.json``
next to this module (``models``: ``torchvision.models.list_models()``; ``weights``: per model its weights
enum, the entry ``DEFAULT`` points to, and each entry's file name under torchvision's download URL), written
by ``python scripts/torchvision_names.py`` from the installed torchvision. ``tests/unit/test_torchvision_names.py``
compares the file with the installed torchvision's live table, so an upgrade that changes the names fails
a test until the file is regenerated. Mean/std and crop sizes stay with the weights on the compute node.
"""
from __future__ import annotations

import functools
import json
from pathlib import Path

DATA_FILE = Path(__file__).with_name("torchvision_names.json")


@functools.lru_cache(maxsize=1)
def names() -> dict:
    """The data file: ``{"torchvision": version, "models": [...], "weights": {model: {enum, default, files}}}``."""
    return json.loads(DATA_FILE.read_text())


def model_names() -> tuple[str, ...]:
    return tuple(names()["models"])


@functools.lru_cache(maxsize=1)
def weights_table() -> dict:
    """model -> (weights enum, entry DEFAULT points to, {entry: file name}); shared, not to be changed."""
    return {model: (w["enum"], w["default"], dict(w["files"])) for model, w in names()["weights"].items()}


def live_names(tvm, version: str) -> dict:
    """The data file's content, read from an imported ``torchvision.models`` (the regenerating script's job)."""
    models = list(tvm.list_models(module=tvm))
    weights = {}
    for model in models:
        enum = tvm.get_model_weights(model)
        weights[model] = {"enum": enum.__name__, "default": enum.DEFAULT.name,
                          "files": {w.name: w.url.rsplit("/", 1)[1] for w in enum}}
    return {"torchvision": version, "models": models, "weights": weights}


__all__ = ["DATA_FILE", "live_names", "model_names", "names", "weights_table"]
