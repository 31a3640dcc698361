"""`hpcnn predict RUN_DIR INPUT... --out FILE`: a trained run applied to images (any launcher, or a Slurm array).

Without --shards it predicts here (under torchrun/srun each rank takes a shard); with
``--profile SITE --shards N`` it lists the inputs, submits one Slurm array and returns;
``--collect DIR`` merges the finished shards, ``--resubmit DIR`` reruns the missing ones.
`hpcnn export` writes a run's network with torch.export. torch is imported only when a command runs.
"""
from __future__ import annotations

from pathlib import Path

from ..errors import ConfigError
from ..predict import list_inputs, manifest
from ..predict.outputs import check_output
from ..slurm.jobs import records
from ..slurm.jobs.predict_array import PredictArray, submit_missing, submit_predict
from .args import add_json, add_resource_flags, print_json, resources
from .jobs import recorded_site_and_cost

SHARD_RESOURCE_FLAGS = ("gpus_per_node", "cpus_per_task", "mem_gb", "time", "partition", "account", "qos",
                        "constraint", "job_name")


def _options(args) -> dict:
    return {"batch_size": args.batch_size, "num_workers": args.num_workers, "device": args.device,
            "precision": args.precision, "channels_last": args.channels_last, "compile": args.compile,
            "log_every_s": args.log_every}


def _say_submitted(preds, as_json: bool) -> None:
    spec = manifest.read_spec(preds.sweep_dir)
    ids = preds.record["submissions"][-1]["arrays"] if preds.submitted else []
    if as_json:
        print_json({"shards_dir": str(preds.sweep_dir), "out": spec["out"], "inputs": spec["inputs"],
                    "shards": spec["shards"], "submitted": preds.submitted, "arrays": ids})
        return
    if not preds.submitted:
        print(f"nothing to submit: every shard of {preds.sweep_dir} has output or a queued/running job")
    else:
        print(f"submitted {len(preds.submitted)} of {spec['shards']} shard(s) ({spec['inputs']:,} inputs) as array "
              f"job(s) {', '.join(ids)}")
        print(recorded_site_and_cost(preds.record, "--profile", only=preds.submitted))
    print(f"shards directory: {preds.sweep_dir}")
    print(f"follow it:        hpcnn status {ids[0] if ids else preds.sweep_dir}   "
          f"hpcnn results {preds.sweep_dir}")
    print(f"then merge:       hpcnn predict --collect {preds.sweep_dir}   (-> {spec['out']})")


def _collect(args) -> int:
    directory = Path(args.collect)
    if not (directory / manifest.SPEC_FILE).is_file() and manifest.shards_dir_for(directory).is_dir():
        directory = manifest.shards_dir_for(directory)  # the output file named instead of its .shards directory
    if (directory / records.SWEEP_FILE).is_file():
        result = PredictArray.from_dir(directory).collect(args.out)
    else:
        result = manifest.collect(directory, args.out)
    if args.json:
        print_json(result)
    else:
        print(f"wrote {result['out']}: {result['inputs']:,} rows from {result['shards']} shards, in input order")
    return 0


def _here(args) -> int:
    from ..predict import load_predictor, predict_files
    from ..run import bootstrap

    _, _, comm = bootstrap(timeout_s=3600.0)  # a CPU (gloo) group: rank 0 waits for every part on disk
    try:
        predictor = load_predictor(args.run_dir, args.checkpoint, args.device, args.precision, args.channels_last,
                                   args.compile)
        result = predict_files(predictor, list_inputs(args.inputs), args.out, args.topk, args.batch_size,
                               args.num_workers, comm, log_every_s=args.log_every)
    finally:
        comm.shutdown()
    if comm.is_main and args.json:
        print_json(result)
    return 0


def cmd_predict(args) -> int:
    if args.out:  # a place that cannot be written fails now, in one line, before any input is read
        check_output(args.out)
    if args.collect:
        return _collect(args)
    if args.resubmit:
        _say_submitted(submit_missing(args.resubmit), args.json)
        return 0
    if not args.run_dir or not args.inputs or not args.out:
        raise ConfigError("hpcnn predict needs RUN_DIR, at least one INPUT and --out FILE", "command line",
                          "or --collect DIR / --resubmit DIR for a sharded prediction")
    if args.shards is None:
        return _here(args)
    if not args.profile:
        raise ConfigError("--shards submits a Slurm array and needs --profile SITE", "--shards",
                          "e.g. --profile local; without --shards the prediction runs here")
    _say_submitted(submit_predict(args.run_dir, args.inputs, args.out, args.shards, args.profile, args.max_parallel,
                                  resources(args, SHARD_RESOURCE_FLAGS), args.checkpoint, args.topk, _options(args),
                                  max_array_size=args.max_array_size), args.json)
    return 0


def cmd_export(args) -> int:
    from ..predict.export import export_run

    model, meta = export_run(args.run_dir, args.out, args.checkpoint)
    print(f"wrote {model} and {meta}: load with torch.export.load({str(model)!r}).module() (no hpcnn needed)")
    return 0


def register(subparsers) -> None:
    p = subparsers.add_parser("predict", help="apply a trained run to images (CSV/Parquet: top-k classes per input)",
                              description="Predict with a run's best checkpoint and exactly its evaluation "
                                          "preprocessing. Under torchrun/srun each rank takes a shard; with "
                                          "--profile/--shards one Slurm array does.")
    p.add_argument("run_dir", metavar="RUN_DIR", nargs="?")
    p.add_argument("inputs", nargs="*", metavar="INPUT", help="image files, folders, glob patterns, .txt lists, .h5")
    p.add_argument("--out", help="CSV or .parquet file to write (one row per input, in input order)")
    p.add_argument("--checkpoint", choices=["best", "final"], default="best")
    p.add_argument("--topk", type=int, default=3)
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--num-workers", type=int, default=0, help="DataLoader decoding processes")
    p.add_argument("--device", default="auto", help="auto (this rank's GPU if any, else CPU), cpu, cuda, cuda:N")
    p.add_argument("--precision", choices=["fp32", "bf16"], default="fp32", help="bf16: autocast (for GPUs)")
    p.add_argument("--channels-last", action="store_true", help="NHWC memory format (faster convolutions on GPUs)")
    p.add_argument("--compile", action="store_true", help="torch.compile the network first")
    p.add_argument("--log-every", type=float, default=30.0, metavar="SECONDS",
                   help="progress line interval when not on a terminal")
    add_json(p, help="print the counts and throughput (or submission) as JSON")
    g = p.add_argument_group("Slurm array (submit, follow with `hpcnn status`, then --collect)")
    g.add_argument("--profile", help="site profile: submit the prediction as one Slurm array")
    g.add_argument("--shards", type=int, help="array tasks, each predicting a contiguous shard of the inputs")
    g.add_argument("--max-parallel", type=int, help="most shards running at once (%%K)")
    g.add_argument("--max-array-size", type=int, help="split arrays at this size (default: the profile's)")
    add_resource_flags(g, SHARD_RESOURCE_FLAGS)
    g.add_argument("--collect", metavar="DIR", help="merge the finished shards of FILE.shards/ (DIR) into FILE")
    g.add_argument("--resubmit", metavar="DIR", help="submit the shards of DIR that have no output and no live job")
    p.set_defaults(func=cmd_predict)

    e = subparsers.add_parser("export", help="write a run's network with torch.export (+ JSON: classes, preprocessing)",
                              description="A model file a colleague can load with plain PyTorch, no hpcnn.")
    e.add_argument("run_dir", metavar="RUN_DIR")
    e.add_argument("--out", required=True, help="model file to write, e.g. model.pt2 (the JSON goes next to it)")
    e.add_argument("--checkpoint", choices=["best", "final"], default="best")
    e.set_defaults(func=cmd_export)
