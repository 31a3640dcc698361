"""hpcnn's sbatch templates (``*.sbatch.j2``) and shipped site profiles (``profiles/*.yaml``).

Installed as the package ``hpcnn.slurm_templates`` (package data; see setup.py), so an
installed hpcnn finds them through importlib. Nothing to import here.
"""
