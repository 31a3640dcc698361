"""Slurm walltimes (``[D-]HH:MM:SS`` or plain minutes): the one parser.

It lives in ``config`` because a job config's ``slurm.time`` is checked when the config
loads (no Slurm needed), and the Slurm layer reads the same format for resource requests
and a site profile's ``max_time``. Errors are ConfigError unless the caller passes its own
class (ProfileError for profiles).
"""
from __future__ import annotations

import re

from ..errors import ConfigError, HpcnnError

_WALLTIME = re.compile(r"^(?:(\d+)-)?(\d{1,3}):([0-5]\d):([0-5]\d)$")
_MINUTES = re.compile(r"^\d+$")


def walltime_minutes(text: str, key: str = "slurm.time", where: str | None = None,
                     error: type[HpcnnError] = ConfigError) -> int:
    """'[D-]HH:MM:SS' or plain minutes -> whole minutes (seconds round up)."""
    text = str(text).strip()
    if _MINUTES.match(text):
        return int(text)
    m = _WALLTIME.match(text)
    if not m:
        raise error(f"'{key}' must look like HH:MM:SS, D-HH:MM:SS or minutes, got {text!r}", where)
    days, hours, minutes, seconds = (int(g or 0) for g in m.groups())
    return days * 1440 + hours * 60 + minutes + (1 if seconds else 0)


def format_walltime(minutes: int) -> str:
    """Whole minutes -> 'HH:MM:00', or 'D-HH:MM:00' from one day on."""
    days, rest = divmod(int(minutes), 1440)
    hours, mins = divmod(rest, 60)
    return f"{days}-{hours:02d}:{mins:02d}:00" if days else f"{hours:02d}:{mins:02d}:00"


__all__ = ["format_walltime", "walltime_minutes"]
