"""The scheduler side: what knows the site and talks to Slurm.

``profiles`` (site facts as validated YAML), ``resources`` (config + profile -> one request,
checked against the site's limits), ``rendering`` (the pure sbatch renderer), ``preflight``
(login-node checks before anything is queued) and ``commands`` (the only module that runs
sbatch, sacct, squeue, scancel or scontrol). Nothing here knows about submissions, sweeps
or job handles; ``hpcnn.slurm.jobs`` builds those on top. Never imports torch.
"""
