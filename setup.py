"""Only what pyproject.toml cannot say: ship the top-level slurm_templates/ as ``hpcnn.slurm_templates``.

The templates and profiles stay at the repository's top level (the agreed layout); this maps
them into the installed package so a wheel (or an editable install) finds them with importlib.
Everything else about the build is in pyproject.toml.
"""
from setuptools import find_packages, setup

setup(packages=find_packages(include=["hpcnn", "hpcnn.*"]) + ["hpcnn.slurm_templates"],
      package_dir={"hpcnn.slurm_templates": "slurm_templates"})
