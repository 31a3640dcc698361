"""Apply a trained run to new images: ``hpcnn predict RUN_DIR INPUT... --out FILE``."""
from .listing import list_inputs
from .predictor import load_predictor, predict_files

__all__ = ["list_inputs", "load_predictor", "predict_files"]
