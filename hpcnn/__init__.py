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


# hpcnn.slurm's API (its __all__; a test keeps the two equal). Named here so that `from . import results`
# and other submodule lookups never pull the Slurm stack (and jinja2) into a training rank.
_SLURM = frozenset({"JobArray", "JobHandle", "Profile", "Resources", "SweepSpec", "TaskStatus", "TrainPayload",
                    "check_fits", "expand", "list_profiles", "load_profile", "load_sweep", "locate", "plan_array",
                    "plan_group", "plan_job", "render", "resolve", "submit", "submit_array", "submit_group"})


def __getattr__(name):
    import importlib

    if name in _LAZY:
        module, attr = _LAZY[name]
        return getattr(importlib.import_module(module), attr)
    if name in _SLURM:
        return getattr(importlib.import_module("hpcnn.slurm"), name)
    raise AttributeError(f"module 'hpcnn' has no attribute {name!r}")
