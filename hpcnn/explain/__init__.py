"""What a trained CNN looks at: Grad-CAM heatmaps (``gradcam``) and the ``hpcnn explain`` report (``report``).

``from hpcnn.explain import gradcam`` works on any model and batch; ``explain_run`` draws a run's PNG grids.
"""
from __future__ import annotations

from .gradcam import conv_blocks, gradcam, target_layer

__all__ = ["conv_blocks", "gradcam", "target_layer"]
