"""Which objective a job's config trains with (``hpcnn.train.objective``): the one place that decides.

Above both ``train`` (supervised classification) and ``ssl`` (SimCLR), so neither imports the other
upward; ``hpcnn.run`` and ``hpcnn bench`` ask here. A new objective is one more branch.
"""
from __future__ import annotations


def objective_for(cfg):
    if cfg.ssl.method == "simclr":
        from .ssl.objective import SimCLRObjective

        return SimCLRObjective(cfg)
    from .train.objective import Supervised

    return Supervised(cfg)


__all__ = ["objective_for"]
