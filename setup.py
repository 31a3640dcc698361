"""Only what pyproject.toml cannot say: ship the top-level slurm_templates/ as ``hpcnn.slurm_templates``
and the example jobs/ as ``hpcnn.example_jobs``.

The templates, profiles and example jobs stay at the repository's top level (the agreed layout); this
maps them into the installed package so a wheel finds them (``hpcnn examples`` lists and copies the jobs).
Everything else about the build is in pyproject.toml.
"""
from setuptools import find_packages, setup

setup(packages=find_packages(include=["hpcnn", "hpcnn.*"]) + ["hpcnn.slurm_templates", "hpcnn.example_jobs"],
      package_dir={"hpcnn.slurm_templates": "slurm_templates", "hpcnn.example_jobs": "jobs"})
