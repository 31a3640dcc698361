"""Apply a trained run to new images: ``hpcnn predict RUN_DIR INPUT... --out FILE``.

Listing, output files and Slurm-array manifests are torch-free (the login node lists and
collects); the predictor itself is imported on first use.
"""
from .listing import list_inputs

__all__ = ["list_inputs", "load_predictor", "predict_files"]


def __getattr__(name: str):
    if name in ("load_predictor", "predict_files"):
        from . import predictor

        return getattr(predictor, name)
    raise AttributeError(f"module 'hpcnn.predict' has no attribute {name!r}")
