"""What differs between runs' configs: the keys that name each run in plots and tables.

Configs are flattened to dotted keys (nested sections only; lists such as ``model.channels`` or
``phases`` are one value). A key differs when at least two runs hold different values for it,
a run without the key counting as its own value. Keys that differ by construction and say
nothing about the experiment (where run directories go) are ignored.
"""
from __future__ import annotations

import json
from typing import Any

IGNORED_KEYS = frozenset({"train.runs_dir", "model.weights_cache"})
MISSING = object()


def flatten(config: dict | None, prefix: str = "") -> dict[str, Any]:
    """{"optim": {"lr": 0.1}} -> {"optim.lr": 0.1}, in the config's own order."""
    out: dict[str, Any] = {}
    for key, value in (config or {}).items():
        dotted = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            out.update(flatten(value, f"{dotted}."))
        else:
            out[dotted] = value
    return out


def _canonical(value: Any) -> str:
    return "<missing>" if value is MISSING else json.dumps(value, sort_keys=True, default=str)


def differing_keys(configs: list[dict | None]) -> list[str]:
    """Dotted keys whose values are not the same in every given config (None = unknown, left out)."""
    flats = [flatten(c) for c in configs if c is not None]
    if len(flats) < 2:
        return []
    order = dict.fromkeys(key for flat in flats for key in flat)  # every key once, first seen first
    return [key for key in order if key not in IGNORED_KEYS
            and len({_canonical(flat.get(key, MISSING)) for flat in flats}) > 1]


def format_value(value: Any) -> str:
    """As a user writes it in an override: 0.003, sgd, true, [8,16], null."""
    if value is MISSING:
        return "-"
    if isinstance(value, str):
        return value
    return json.dumps(value, separators=(",", ":"), default=str)


def describe(config: dict | None, keys: list[str]) -> str:
    """``optim.lr=0.003 model.dropout=0.1``: a run by the keys that differ ("" when there are none)."""
    flat = flatten(config)
    return " ".join(f"{key}={format_value(flat.get(key, MISSING))}" for key in keys)


__all__ = ["IGNORED_KEYS", "describe", "differing_keys", "flatten", "format_value"]
