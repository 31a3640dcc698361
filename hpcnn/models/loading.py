"""Loading weights into a model that may differ from the one that wrote them, and saying what happened.

Starting from a checkpoint usually changes the head (another number of classes), sometimes more.
``load_matching`` loads every tensor whose name and shape match, and reports which were
loaded, which skipped (shape mismatch: the old head), which the model has but the file lacks
(missing) and which the file has but the model does not (unused). The head
(``parts.head_name``) may mismatch; when not one backbone tensor matches, the file belongs to
another architecture and loading is refused with a ConfigError naming the file.
"""
from __future__ import annotations

import logging
from pathlib import Path

import torch
from torch import nn

from ..errors import CheckpointError, ConfigError
from .parts import head_name

log = logging.getLogger("hpcnn.models")
_SHOWN = 6  # names listed per log line; the report has them all


def read_state_dict(path: Path, where: str = "model.weights") -> dict[str, torch.Tensor]:
    """A state_dict from a file: plain, hpcnn's ``{"model": ...}``, or ``{"state_dict": ...}``; ``module.`` stripped."""
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # truncated zip, pickle with code in it, ...: torch's message spans many lines
        text = (str(err).strip() or type(err).__name__).splitlines()[0][:200]
        raise CheckpointError(f"cannot read weights file {path}: {text}", where,
                              "only tensor state_dicts are loaded (torch.load weights_only=True)") from None
    for key in ("model", "state_dict"):
        if isinstance(obj, dict) and isinstance(obj.get(key), dict):
            obj = obj[key]
            break
    if not isinstance(obj, dict) or not obj or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise ConfigError(f"{path} holds no state_dict (a dict of tensors)", where,
                          "save one with torch.save(model.state_dict(), path)")
    if all(k.startswith("module.") for k in obj):  # saved from a DDP-wrapped model
        obj = {k[len("module."):]: v for k, v in obj.items()}
    return obj


def _names(items) -> str:
    items = list(items)
    more = f" (+{len(items) - _SHOWN} more)" if len(items) > _SHOWN else ""
    return ", ".join(items[:_SHOWN]) + more


def _log_report(report: dict) -> None:
    bb = report["backbone"]
    partial = bb["loaded"] < bb["total"]
    (log.warning if partial else log.info)(
        "weights from %s: loaded %d tensors (backbone %d of %d%s), skipped %d, missing %d, unused %d",
        report["source"], len(report["loaded"]), bb["loaded"], bb["total"], ": partial!" if partial else "",
        len(report["skipped"]), len(report["missing"]), len(report["unused"]))
    if report["skipped"]:
        log.info("  skipped (why): %s", _names(f"{k} {why}" for k, why in report["skipped"].items()))
    if report["missing"]:
        log.info("  missing from the file (kept as initialised): %s", _names(report["missing"]))
    if report["unused"]:
        log.info("  in the file but not in the model: %s", _names(report["unused"]))


def load_matching(model: nn.Module, state: dict[str, torch.Tensor], source: str | Path, model_name: str = "",
                  trained_as: str | None = None, where: str = "model.weights", exclude: dict | None = None) -> dict:
    """Load the tensors of ``state`` whose names and shapes match ``model``; return (and log) the report.

    Report keys: source, head, loaded, skipped {name: "shape -> shape"}, missing, unused,
    backbone {loaded, total} (learned backbone tensors, BatchNorm step counters not counted).
    ``trained_as``: the model.name the file was written with, when known (an hpcnn run directory).
    """
    head = head_name(model)
    own = model.state_dict()
    exclude = exclude or {}  # {name: why}: in the file, deliberately not loaded (reported as skipped)
    state = {k: v for k, v in state.items() if k not in exclude}
    matching = {k: v for k, v in state.items() if k in own and tuple(own[k].shape) == tuple(v.shape)}
    report = {
        "source": str(source), "head": head, "loaded": list(matching),
        "skipped": {**{k: f"{tuple(v.shape)} -> {tuple(own[k].shape)}" for k, v in state.items()
                       if k in own and k not in matching}, **exclude},
        "missing": [k for k in own if k not in state and k not in exclude],
        "unused": [k for k in state if k not in own],
    }
    # BatchNorm's step counter is a scalar in every architecture: it proves nothing about a match
    backbone = [k for k in own if not k.startswith(head + ".") and not k.endswith("num_batches_tracked")]
    report["backbone"] = {"loaded": sum(1 for k in backbone if k in matching), "total": len(backbone)}
    if backbone and report["backbone"]["loaded"] == 0:
        model_name = model_name or type(model).__name__
        hint = (f"it was trained with model.name={trained_as}: use that (and its size settings)" if trained_as
                and trained_as != model_name else f"was it trained with model.name={model_name} and the same sizes?")
        raise ConfigError(f"0 of {len(backbone)} backbone tensors of {model_name} match {source}: it holds the weights "
                          "of another architecture", where, hint)
    model.load_state_dict(matching, strict=False)
    _log_report(report)
    return report


def brief_report(report: dict | None) -> dict | None:
    """The weights-loading report as summary.json keeps it: counts, and the names that did not load."""
    if report is None:
        return None
    return {"source": report["source"], "loaded": len(report["loaded"]), "skipped": sorted(report["skipped"]),
            "missing": report["missing"], "backbone_loaded": report["backbone"]["loaded"],
            "backbone_total": report["backbone"]["total"]}

__all__ = ["brief_report", "load_matching", "read_state_dict"]
