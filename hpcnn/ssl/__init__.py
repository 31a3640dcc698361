"""Self-supervised pretraining (SimCLR, an objective of the one Trainer) and the linear probe; see docs/ssl.md."""
from .objective import SimCLRObjective
from .probe import LinearProbe, extract_features, linear_probe, probe_weights
from .simclr import LARS, Backbone, SimCLR, TwoViews, ViewSettings, nt_xent

__all__ = ["LARS", "Backbone", "LinearProbe", "SimCLR", "SimCLRObjective", "TwoViews", "ViewSettings",
           "extract_features", "linear_probe", "nt_xent", "probe_weights"]
