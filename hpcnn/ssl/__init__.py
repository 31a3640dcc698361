"""Self-supervised pretraining (SimCLR) and the linear probe that measures it; see docs/ssl.md."""
from .pretrain import Pretrainer, linear_probe, probe_weights, run_pretrain
from .simclr import LARS, Backbone, SimCLR, TwoViews, ViewSettings, nt_xent, simclr_loss

__all__ = ["LARS", "Backbone", "Pretrainer", "SimCLR", "TwoViews", "ViewSettings", "linear_probe", "nt_xent",
           "probe_weights", "run_pretrain", "simclr_loss"]
