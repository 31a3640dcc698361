"""`hpcnn runs [DIR]` (list runs) and `hpcnn runs rm RUN... | --older-than AGE` (remove them safely). Torch-free."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..errors import HpcnnError
from ..runlist import human_age, human_size, list_runs, parse_age, plan_removal, remove
from ..tables import format_table
from .args import add_json, intermixed, print_json


def cmd_runs(args) -> int:
    if args.items and args.items[0] == "rm":
        return cmd_rm(args, args.items[1:])
    if len(args.items) > 1:
        raise HpcnnError(f"one runs directory at a time, got {len(args.items)}", "hpcnn runs",
                         "to remove runs: hpcnn runs rm RUN...")
    if args.older_than or args.yes:
        raise HpcnnError("--older-than and --yes belong to `hpcnn runs rm`", "hpcnn runs")
    runs_dir = Path(args.items[0] if args.items else "runs")
    infos = list_runs(runs_dir)
    if args.json:
        print_json([r.to_dict() for r in infos])
    elif not infos:
        print(f"no hpcnn runs in {runs_dir}")
    else:
        rows = [(r.name, r.kind, r.status, r.metric or "-", f"{r.value:.4g}" if r.value is not None else "-",
                 human_age(r.age_s), human_size(r.size_bytes)) for r in infos]
        print(format_table([("run", "kind", "status", "metric", "best", "age", "size"), *rows]))
    return 0


def _confirm(infos) -> bool:
    total = sum(r.size_bytes for r in infos)
    answer = input(f"remove {len(infos)} run(s), {human_size(total)}? [y/N] ")
    return answer.strip().lower() in ("y", "yes")


def _targets(args, items: list[str]) -> list[Path]:
    if args.older_than:
        if len(items) > 1:
            raise HpcnnError("with --older-than, name at most one runs directory", "hpcnn runs rm")
        limit = parse_age(args.older_than)
        return [r.path for r in list_runs(Path(items[0] if items else "runs")) if r.age_s > limit]
    if not items:
        raise HpcnnError("name the runs to remove, or --older-than AGE", "hpcnn runs rm",
                         "e.g. hpcnn runs rm runs/cnn-20261201-101010-ab12, or hpcnn runs rm --older-than 30d")
    return [Path(item) for item in items]


def cmd_rm(args, items: list[str]) -> int:
    ok, refused = plan_removal(_targets(args, items))
    for path, why in refused:
        print(f"kept {path}: {why}", file=sys.stderr)
    if not ok:
        print("nothing to remove", file=sys.stderr)
        return 1 if refused else 0
    for info in ok:
        print(f"{'would remove' if args.dry_run else 'remove'} {info.path} ({info.kind}, {info.status})")
    if args.dry_run:
        return 0
    if not args.yes and not sys.stdin.isatty():
        raise HpcnnError("not removing without confirmation", "hpcnn runs rm",
                         "add --yes (no terminal here to ask), or --dry-run to see what would go")
    removed = remove(ok, (lambda _: True) if args.yes else _confirm)
    print(f"removed {len(removed)} run(s)" if removed else "nothing removed")
    return 1 if refused else 0


def register(subparsers) -> None:
    p = intermixed(subparsers.add_parser(  # `runs rm --older-than 7d DIR`: options between positionals
        "runs", help="list runs (status, metric, age, size); `runs rm` removes old ones safely",
        description="hpcnn runs [DIR]: the runs under DIR (default ./runs), newest first. "
                    "hpcnn runs rm RUN... | --older-than AGE [DIR]: remove hpcnn run directories; never one whose "
                    "job is still queued or that is still training; asks first (or --yes).",
        formatter_class=argparse.RawDescriptionHelpFormatter))
    p.add_argument("items", nargs="*", metavar="DIR | rm RUN...")
    p.add_argument("--older-than", metavar="AGE", help="with rm: every run under DIR older than AGE (7d, 12h, 2w)")
    p.add_argument("--yes", action="store_true", help="with rm: do not ask")
    p.add_argument("--dry-run", action="store_true", help="with rm: only say what would be removed")
    add_json(p)
    p.set_defaults(func=cmd_runs)


__all__ = ["register"]
