"""The user's side: what a submission leaves in hand.

``submission`` (one job), ``groups`` (sweeps and mixed-resource groups as one planned unit),
``arrays`` (the array submission both share), ``sweep`` (sweep files -> task configs),
``payload`` (what every Slurm task runs), ``records`` (what is written to disk so a new shell
finds it), ``status`` / ``handles`` / ``results`` (state, handles and tables from any shell).
Talks to Slurm only through ``hpcnn.slurm.site``. Never imports torch.
"""
