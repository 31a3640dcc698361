"""hpcnn: train CNNs from a laptop to N GPU nodes of a Slurm cluster.

``import hpcnn`` stays light (no torch): the login-node API loads lazily.
"""
from __future__ import annotations

__version__ = "0.1.0"

_LAZY = {
    "load_job": ("hpcnn.config", "load_job"),
    "JobConfig": ("hpcnn.config", "JobConfig"),
    "run_job": ("hpcnn.run", "run_job"),
    "detect_world": ("hpcnn.env", "detect_world"),
}


def __getattr__(name):
    if name in _LAZY:
        import importlib

        module, attr = _LAZY[name]
        return getattr(importlib.import_module(module), attr)
    try:
        import importlib

        slurm = importlib.import_module("hpcnn.slurm")
    except ImportError:
        raise AttributeError(name) from None
    if name in getattr(slurm, "__all__", ()):
        return getattr(slurm, name)
    raise AttributeError(f"module 'hpcnn' has no attribute {name!r}")
