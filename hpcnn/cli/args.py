"""What every verb module shares: the did-you-mean parser, the `[CONFIG] [key=value]` positional, `--json`,
intermixed options and positionals, and Slurm's resource flags. Torch-free.

A misspelt verb or flag gets the closest valid one in one line (exit 2), as misspelt config keys do
(config/strict.py): ``hpcnn sumbit`` and ``--profle`` deserve that rather than a usage block.
"""
from __future__ import annotations

import argparse
import difflib
import json
import re
import sys

ITEMS = "[CONFIG] [key.sub=value ...]"
RESOURCE_FLAGS = (("--nodes", int, "nodes"), ("--gpus-per-node", int, "gpus_per_node"),
                  ("--tasks-per-node", int, "tasks_per_node"), ("--cpus-per-task", int, "cpus_per_task"),
                  ("--mem-gb", float, "mem_gb"), ("--time", str, "time"), ("--partition", str, "partition"),
                  ("--account", str, "account"), ("--qos", str, "qos"), ("--constraint", str, "constraint"),
                  ("--job-name", str, "job_name"), ("--max-requeues", int, "max_requeues"))
_INVALID_CHOICE = re.compile(r"invalid choice: '?(?P<value>[^' ]+)'? \(choose from (?P<choices>.*)\)")


class Parser(argparse.ArgumentParser):
    """An ArgumentParser whose usage errors suggest the closest verb or flag (its subparsers are Parsers too)."""

    def error(self, message: str):
        hint = _choice_hint(message) or (message if "did you mean" in message else None)
        if hint is None:
            super().error(message)
        self.exit(2, f"{self.prog}: error: {hint}\n")


def _choice_hint(message: str) -> str | None:
    match = _INVALID_CHOICE.search(message)
    if not match:
        return None
    value = match.group("value")
    choices = [c.strip().strip("'\"") for c in match.group("choices").split(",")]
    close = difflib.get_close_matches(value, choices, n=1, cutoff=0.6)
    if not close:
        return None
    what = message[:match.start()].strip().rstrip(":")
    noun = "command" if what in ("argument COMMAND", "argument ACTION") else "choice"
    prefix = "" if noun == "command" else f"{what}: "
    return f"{prefix}unknown {noun} '{value}' — did you mean '{close[0]}'?"


def unrecognized(parser: argparse.ArgumentParser, argv: list[str] | None, extra: list[str]) -> str:
    """argparse's "unrecognized arguments" message, with the closest flag of the active verb for a misspelt one."""
    for token in sys.argv[1:] if argv is None else argv:  # the (sub)parser the line ends up in: `scale status X`
        subparsers = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
        if subparsers and token in subparsers[0].choices:
            parser = subparsers[0].choices[token]
    message = f"unrecognized arguments: {' '.join(extra)}"
    flags = [s for s in parser._option_string_actions if s.startswith("--")]
    for token in extra:
        if token.startswith("--"):
            close = difflib.get_close_matches(token.partition("=")[0], flags, n=1, cutoff=0.6)
            if close:
                return f"{message} — did you mean '{close[0]}'?"
    return message


class _Intermixed(argparse.ArgumentParser):
    """Lets `hpcnn submit CONFIG --profile P key=value` mix positionals and options freely."""

    def parse_known_args(self, args=None, namespace=None):
        if getattr(self, "_mixing", False):
            return super().parse_known_args(args, namespace)
        self._mixing = True
        try:
            return self.parse_known_intermixed_args(args, namespace)
        finally:
            self._mixing = False


def intermixed(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """``parser`` (made by a subparsers object) taking options between its positionals."""
    parser.__class__ = _Intermixed
    return parser


def add_items(parser, help: str | None = None, metavar: str = ITEMS, nargs: str = "*") -> None:
    """The ``items`` positional: a job config and ``key.sub=value`` overrides (``main`` adds those after options)."""
    parser.add_argument("items", nargs=nargs, metavar=metavar, help=help)


def add_json(parser, help: str | None = None) -> None:
    parser.add_argument("--json", action="store_true", help=help)


def print_json(data) -> None:
    print(json.dumps(data, indent=2, default=str))


def add_resource_flags(group, keys=None) -> None:
    """Slurm's resource flags (``--nodes`` ... ``--max-requeues``), or only those whose key is in ``keys``."""
    for flag, typ, key in RESOURCE_FLAGS:
        if keys is None or key in keys:
            group.add_argument(flag, type=typ, dest=key, metavar=key.upper())


def resources(args, keys=None) -> dict:
    """The resource flags given on the command line, as slurm.* overrides."""
    return {key: getattr(args, key) for _, _, key in RESOURCE_FLAGS
            if (keys is None or key in keys) and getattr(args, key, None) is not None}


__all__ = ["ITEMS", "Parser", "RESOURCE_FLAGS", "add_items", "add_json", "add_resource_flags",
           "intermixed", "print_json", "resources", "unrecognized"]
