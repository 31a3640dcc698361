"""`hpcnn train` (alias `run`), `hpcnn config show`, `hpcnn examples`: a job config trained here, shown, or copied.

torch is imported only when `train` runs (``hpcnn.run``).
"""
from __future__ import annotations

from pathlib import Path

from ..config import dump_yaml, examples, load_job, split_config_args, to_dict
from ..errors import EXIT_PREEMPTED
from ..rundir import config_for_resume
from ..tables import format_table
from .args import add_items, add_json, print_json


def cmd_train(args) -> int:
    from ..run import run_job

    path, overrides = split_config_args(args.items)
    if args.resume and args.resume != "auto":
        cfg = load_job(path, overrides) if path else config_for_resume(args.resume, overrides)
        run_dir, resume = args.resume, "required"
    else:
        cfg = load_job(path, overrides)
        run_dir, resume = args.run_dir, args.resume
    return EXIT_PREEMPTED if run_job(cfg, run_dir, resume).status == "preempted" else 0


def cmd_config_show(args) -> int:
    path, overrides = split_config_args(args.items)
    cfg = load_job(path, overrides)
    if args.json:
        print_json(to_dict(cfg))
    else:
        print(f"# effective config: {path or 'built-in default'}" + (f" + {' '.join(overrides)}" if overrides else ""))
        print(dump_yaml(cfg), end="")
    return 0


def cmd_examples(args) -> int:
    if args.copy:
        copied, kept = examples.copy_examples(args.copy)
        print(f"copied {len(copied)} example job(s) to {args.copy}"
              + (f"; kept {len(kept)} file(s) already there unchanged" if kept else ""))
        print(f"try: hpcnn train {Path(args.copy) / 'default.yaml'}")
        return 0
    print(f"# example jobs shipped with hpcnn ({examples.examples_dir()}); copy them: hpcnn examples --copy jobs")
    names = examples.list_examples()
    if names:
        print(format_table([(f"jobs/{name}", examples.describe(name)) for name in names]))
    return 0


def register(sub) -> None:
    """`train` and `config`; `examples` comes after `data` in the verb list (``register_examples``)."""
    t = sub.add_parser("train", aliases=["run"], help="train in this process (python, torchrun, srun, horovodrun)",
                       description="Train a job config here. Under torchrun/srun/horovodrun every rank runs this.")
    add_items(t, help="job config YAML (default: the built-in default job) and overrides")
    t.add_argument("--run-dir", help="where to write results (default: train.runs_dir/NAME-TIME-XXXX)")
    t.add_argument("--resume", metavar="RUN_DIR|auto",
                   help="continue a run exactly from its newest checkpoint; 'auto' resumes --run-dir if it has one")
    t.set_defaults(func=cmd_train)

    c = sub.add_parser("config", help="inspect job configs")
    csub = c.add_subparsers(dest="config_command", metavar="ACTION", required=True)
    show = csub.add_parser("show", help="print the effective config (defaults + file + overrides)")
    add_items(show)
    add_json(show)
    show.set_defaults(func=cmd_config_show)


def register_examples(sub) -> None:
    ex = sub.add_parser("examples", help="list the example jobs shipped with hpcnn, or copy them (--copy DIR)",
                        description="The example jobs of the README and docs. Outside the checkout, "
                                    "`hpcnn train jobs/NAME.yaml` reads the shipped NAME.yaml when there is no such "
                                    "file here.")
    ex.add_argument("--copy", metavar="DIR", help="copy every example into DIR (files already there are kept)")
    ex.set_defaults(func=cmd_examples)
