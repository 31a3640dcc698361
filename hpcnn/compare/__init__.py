"""Run comparison (``hpcnn compare``): learning curves of several runs in one PNG, final metrics side by side.

Runs are named by what differs between their saved configs (``diff``), found from run or sweep
directories (``runs``), tabulated from ``summary.json`` through ``hpcnn.results`` (``table``) and
drawn with matplotlib's Agg backend (``plot``). Torch-free: it runs on a login node or a laptop.
"""
from __future__ import annotations

from .diff import IGNORED_KEYS, describe, differing_keys, flatten
from .runs import Run, collect, curve, monitored_metric
from .table import comparison, format_table

__all__ = ["IGNORED_KEYS", "Run", "collect", "comparison", "curve", "describe", "differing_keys", "flatten",
           "format_table", "monitored_metric"]
