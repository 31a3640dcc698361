"""argparse with "did you mean": a misspelt verb or flag gets the closest valid one, in one line (exit 2).

Misspelt config keys already get a suggestion (config/strict.py); ``hpcnn sumbit`` and ``--profle``
deserve the same instead of a usage block and a list of 22 verbs.
"""
from __future__ import annotations

import argparse
import difflib
import re
import sys

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


def active_parser(parser: argparse.ArgumentParser, argv: list[str]) -> argparse.ArgumentParser:
    """The (sub)parser the command line ends up in: ``hpcnn scale status X`` -> the ``scale status`` parser."""
    for token in argv:
        subparsers = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
        if subparsers and token in subparsers[0].choices:
            parser = subparsers[0].choices[token]
    return parser


def unrecognized(parser: argparse.ArgumentParser, argv: list[str] | None, extra: list[str]) -> str:
    """argparse's "unrecognized arguments" message, with the closest flag of the active verb for a misspelt one."""
    message = f"unrecognized arguments: {' '.join(extra)}"
    flags = [s for s in active_parser(parser, list(sys.argv[1:] if argv is None else argv))._option_string_actions
             if s.startswith("--")]
    for token in extra:
        if token.startswith("--"):
            close = difflib.get_close_matches(token.partition("=")[0], flags, n=1, cutoff=0.6)
            if close:
                return f"{message} — did you mean '{close[0]}'?"
    return message


__all__ = ["Parser", "active_parser", "unrecognized"]
