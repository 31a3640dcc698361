"""The ``hpcnn`` command. Errors print one line (what, where, hint) and exit 2; --debug shows tracebacks."""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from .cli_parser import Parser, unrecognized
from .errors import EXIT_INTERRUPTED, EXIT_PREEMPTED, HpcnnError

EPILOG = """examples:
  hpcnn train                                   # the built-in default: a CNN on synthetic galaxies (CPU ok)
  hpcnn train jobs/mlp_baseline.yaml train.epochs=5
  hpcnn train --resume runs/default-20261123-101500-ab12   # continue exactly where it stopped
  torchrun --nproc_per_node=2 -m hpcnn train jobs/default.yaml
  hpcnn config show jobs/default.yaml optim.lr=0.01
  hpcnn data generate --out galaxies/ --n 2000 --size 64
  hpcnn data pack galaxies/ --out galaxies-shards/    # then data.source=shards data.root=galaxies-shards
"""


def cmd_train(args) -> int:
    from .config import load_job, split_config_args
    from .rundir import config_for_resume
    from .run import run_job

    path, overrides = split_config_args(args.items)
    if args.resume and args.resume != "auto":
        cfg = load_job(path, overrides) if path else config_for_resume(args.resume, overrides)
        run_dir, resume = args.resume, "required"
    else:
        cfg = load_job(path, overrides)
        run_dir, resume = args.run_dir, args.resume
    result = run_job(cfg, run_dir, resume)
    if result.status == "preempted":
        return EXIT_PREEMPTED
    return 0


def cmd_config_show(args) -> int:
    from .config import dump_yaml, load_job, split_config_args

    path, overrides = split_config_args(args.items)
    cfg = load_job(path, overrides)
    if args.json:
        from .config import to_dict

        print(json.dumps(to_dict(cfg), indent=2))
    else:
        print(f"# effective config: {path or 'built-in default'}" + (f" + {' '.join(overrides)}" if overrides else ""))
        print(dump_yaml(cfg), end="")
    return 0


def cmd_data_generate(args) -> int:
    from .data import synthetic

    counts = synthetic.write_image_folder(args.out, args.n, size=args.size, seed=args.seed,
                                          split_fractions=None if args.no_splits else {"train": 0.7, "val": 0.15,
                                                                                        "test": 0.15},
                                          fmt=args.format)
    print(json.dumps(counts, indent=2, default=str))
    return 0


def cmd_data_fetch(args) -> int:
    from .data.sources import fetch

    print(f"downloaded {args.name} to {fetch(args.name, args.root)}")
    return 0


def cmd_examples(args) -> int:
    from .config import examples

    if args.copy:
        copied, kept = examples.copy_examples(args.copy)
        print(f"copied {len(copied)} example job(s) to {args.copy}"
              + (f"; kept {len(kept)} file(s) already there unchanged" if kept else ""))
        print(f"try: hpcnn train {Path(args.copy) / 'default.yaml'}")
        return 0
    print(f"# example jobs shipped with hpcnn ({examples.examples_dir()}); copy them: hpcnn examples --copy jobs")
    names = examples.list_examples()
    width = max((len(n) for n in names), default=0)
    for name in names:
        print(f"jobs/{name.ljust(width)}  {examples.describe(name)}".rstrip())
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = Parser(prog="hpcnn", description="Train CNNs from a laptop to N GPU nodes of a Slurm cluster.",
               epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--debug", action="store_true", help="show full tracebacks")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")

    t = sub.add_parser("train", aliases=["run"], help="train in this process (python, torchrun, srun, horovodrun)",
                       description="Train a job config here. Under torchrun/srun/horovodrun every rank runs this.")
    t.add_argument("items", nargs="*", metavar="[CONFIG] [key.sub=value ...]",
                   help="job config YAML (default: the built-in default job) and overrides")
    t.add_argument("--run-dir", help="where to write results (default: train.runs_dir/NAME-TIME-XXXX)")
    t.add_argument("--resume", metavar="RUN_DIR|auto",
                   help="continue a run exactly from its newest checkpoint; 'auto' resumes --run-dir if it has one")
    t.set_defaults(func=cmd_train)

    c = sub.add_parser("config", help="inspect job configs")
    csub = c.add_subparsers(dest="config_command", metavar="ACTION", required=True)
    show = csub.add_parser("show", help="print the effective config (defaults + file + overrides)")
    show.add_argument("items", nargs="*", metavar="[CONFIG] [key.sub=value ...]")
    show.add_argument("--json", action="store_true")
    show.set_defaults(func=cmd_config_show)

    d = sub.add_parser("data", help="generate or fetch data sets")
    dsub = d.add_subparsers(dest="data_command", metavar="ACTION", required=True)
    g = dsub.add_parser("generate", help="write synthetic galaxies as a class-per-folder image tree")
    g.add_argument("--out", required=True)
    g.add_argument("--n", type=int, default=2000, help="number of images")
    g.add_argument("--size", type=int, default=64)
    g.add_argument("--seed", type=int, default=0)
    g.add_argument("--format", choices=["png", "jpg"], default="png")
    g.add_argument("--no-splits", action="store_true", help="one tree OUT/<class>/ instead of OUT/{train,val,test}/")
    g.set_defaults(func=cmd_data_generate)
    f = dsub.add_parser("fetch", help="download a torchvision data set (login node with internet; never in a job)")
    f.add_argument("name", help="CIFAR10, CIFAR100, MNIST, FashionMNIST, KMNIST, SVHN")
    f.add_argument("--root", required=True)
    f.set_defaults(func=cmd_data_fetch)
    from .data_cli import register as register_data  # pack, inspect: torch only when packing

    register_data(dsub)

    ex = sub.add_parser("examples", help="list the example jobs shipped with hpcnn, or copy them (--copy DIR)",
                        description="The example jobs of the README and docs. Outside the checkout, "
                                    "`hpcnn train jobs/NAME.yaml` reads the shipped NAME.yaml when there is no such "
                                    "file here.")
    ex.add_argument("--copy", metavar="DIR", help="copy every example into DIR (files already there are kept)")
    ex.set_defaults(func=cmd_examples)

    from .slurm.cli import register  # torch-free; a broken import here is a bug to see, not hide

    register(sub)
    from .runs_cli import register as register_runs  # torch-free: hpcnn runs [rm]

    register_runs(sub)
    from .weights_cli import register as register_weights  # torch-free at import

    register_weights(sub)
    from .predict_cli import register as register_predict

    register_predict(sub)
    from .explain_cli import register as register_explain

    register_explain(sub)
    from .compare_cli import register as register_compare  # torch-free

    register_compare(sub)
    from .scale_cli import register as register_scale  # torch-free at import

    register_scale(sub)
    from .monitor_cli import register as register_monitor  # torch-free: top, gpus, report

    register_monitor(sub)
    from .bench_cli import register as register_bench  # torch only when it runs

    register_bench(sub)
    from .tune_cli import register as register_tune  # torch-free: hpcnn tune, hpcnn tune status

    register_tune(sub)
    return p


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    # Overrides may come after options (`train --run-dir D a.b=1`): argparse leaves those over.
    args, extra = parser.parse_known_args(argv)
    if extra:
        if hasattr(args, "items") and all("=" in e and not e.startswith("-") for e in extra):
            args.items = list(args.items) + extra
        else:
            parser.error(unrecognized(parser, argv, extra))
    if not getattr(args, "func", None):
        parser.print_help()
        return 0
    try:
        return int(args.func(args) or 0)
    except HpcnnError as err:
        if args.debug:
            raise
        print(f"error: {err}", file=sys.stderr)
        return err.exit_code
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except Exception as err:  # a write hpcnn.files did not make (plots, TensorBoard) ran out of space: one line too
        from .files import storage_error_from

        storage = storage_error_from(err)
        if storage is None or args.debug:
            raise
        print(f"error: {storage}", file=sys.stderr)
        return storage.exit_code


if __name__ == "__main__":
    sys.exit(main())
