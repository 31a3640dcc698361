"""The ``hpcnn`` command: one module per verb group, registered here in the order ``hpcnn --help`` lists them.

Errors print one line (what, where, hint) and exit 2; --debug shows tracebacks. Torch-free at import:
a verb that trains, predicts or benchmarks imports the training stack inside its command.
"""
from __future__ import annotations

import argparse
import importlib
import os
import select
import sys

from ..errors import EXIT_INTERRUPTED, HpcnnError
from ..files import storage_error_from
from .args import Parser, unrecognized

EXIT_SIGPIPE = 141  # 128 + SIGPIPE, what a shell reports for a writer whose reader left

EPILOG = """examples:
  hpcnn train                                   # the built-in default: a CNN on synthetic galaxies (CPU ok)
  hpcnn train jobs/mlp_baseline.yaml train.epochs=5
  hpcnn train --resume runs/default-20261123-101500-ab12   # continue exactly where it stopped
  torchrun --nproc_per_node=2 -m hpcnn train jobs/default.yaml
  hpcnn config show jobs/default.yaml optim.lr=0.01
  hpcnn data generate --out galaxies/ --n 2000 --size 64
  hpcnn data pack galaxies/ --out galaxies-shards/    # then data.source=shards data.root=galaxies-shards
"""
GROUPS = (("train", "register"), ("data", "register"), ("train", "register_examples"), ("jobs", "register"),
          ("runs", "register"), ("weights", "register"), ("predict", "register"), ("explain", "register"),
          ("compare", "register"), ("scale", "register"), ("monitor", "register"), ("bench", "register"),
          ("tune", "register"), ("lessons", "register"))
# What every rank of a job runs loads only its own group: a 64-rank job does not import the Slurm,
# tune and scale front ends 64 times over from a shared file system.
RANK_VERBS = {"train": ("train", "register"), "run": ("train", "register"), "bench": ("bench", "register")}


def build_parser(verb: str | None = None) -> argparse.ArgumentParser:
    """The whole parser, or (``verb`` one of RANK_VERBS) the parser of that verb alone: same options, same help."""
    p = Parser(prog="hpcnn", description="Train CNNs from a laptop to N GPU nodes of a Slurm cluster.",
               epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--debug", action="store_true", help="show full tracebacks")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")
    for module, register in [RANK_VERBS[verb]] if verb in RANK_VERBS else GROUPS:
        getattr(importlib.import_module(f"{__name__}.{module}"), register)(sub)
    return p


def _verb(argv: list[str]) -> str | None:
    """The verb of a command line, unless help for every verb was asked first (``hpcnn --help train``)."""
    for token in argv:
        if token in ("-h", "--help"):
            return None
        if not token.startswith("-"):
            return token
    return None


def main(argv: list[str] | None = None) -> int:
    parser = build_parser(_verb(sys.argv[1:] if argv is None else argv))
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
    except BrokenPipeError:  # `hpcnn status | head`: the reader left; stop quietly, as shell tools do
        if not _stdout_gone():
            raise
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no second error when Python exits
        return EXIT_SIGPIPE
    except Exception as err:  # a write hpcnn.files did not make (plots, TensorBoard) ran out of space: one line too
        storage = storage_error_from(err)
        if storage is None or args.debug:
            raise
        print(f"error: {storage}", file=sys.stderr)
        return storage.exit_code


def _stdout_gone() -> bool:
    """True when it is our stdout whose reader went away (not some other pipe, e.g. a worker's)."""
    try:
        poll = select.poll()
        poll.register(sys.stdout.fileno(), select.POLLOUT)
        return any(events & select.POLLERR for _, events in poll.poll(0))
    except (OSError, ValueError):
        return False


__all__ = ["build_parser", "main"]
