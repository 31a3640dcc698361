"""Hyperparameter search over one Slurm array: ``hpcnn tune SEARCH.yaml --profile SITE``.

K array tasks ("workers") pull trials from one Optuna study kept in a journal file in the
search directory (no database server), train each with the ordinary Trainer in its own run
directory, report the monitored validation metric every epoch and stop a trial early when the
pruner says so. Modules:

    spec     the search file: strict YAML -> SearchSpec, every mistake named on the login node
    space    the search space: parameter ranges, their checks against the job schema, sampling
    study    the study on the shared file system: journal storage, sampler, pruner, budget
    submit   pre-flight, one Slurm array of K workers, the search directory's record
    worker   what a worker runs (compute node; imports the trainer only when it trains)
    status   what ``hpcnn tune status DIR`` reports; the best trial's config as a job file

Everything but ``worker`` is torch-free (login node).
"""
