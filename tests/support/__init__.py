"""Stand-ins for what cannot run on CI (no GPU): a thin pynvml, and small job scripts for Slurm tests."""
