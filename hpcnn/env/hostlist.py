"""Slurm's compressed host and count lists, expanded without calling ``scontrol``.

Checked against ``scontrol show hostnames`` (Slurm 22.05):

- ``gpu[001-004,007]`` -> gpu001 gpu002 gpu003 gpu004 gpu007 (commas inside brackets are ranges,
  commas or spaces outside separate hosts);
- zero padding follows the width of the range's first bound: ``n[001-10]`` -> n001 .. n010,
  ``n[9-011]`` -> n9 n10 n11;
- several brackets form a cartesian product, leftmost varying slowest:
  ``a[1-2]-b[3-4]`` -> a1-b3 a1-b4 a2-b3 a2-b4;
- counts such as ``SLURM_STEP_TASKS_PER_NODE=2(x3),1`` -> [2, 2, 2, 1].

Malformed lists raise WorldError rather than guessing a master address.
"""
from __future__ import annotations

import re

from ..errors import WorldError

_RANGE = re.compile(r"(\d+)(?:-(\d+))?")
_COUNT = re.compile(r"(\d+)(?:\(x(\d+)\))?")


def _bad(what: str, nodelist: str) -> WorldError:
    return WorldError(what, f"host list {nodelist!r}",
                      "Slurm writes host lists like gpu[001-004,007],login1; check the variable's value")


def _split_hosts(nodelist: str) -> list[str]:
    """Split on commas and whitespace that are outside brackets."""
    parts: list[str] = []
    current: list[str] = []
    depth = 0
    for ch in nodelist:
        if ch == "[":
            depth += 1
            if depth > 1:
                raise _bad("nested brackets", nodelist)
        elif ch == "]":
            depth -= 1
            if depth < 0:
                raise _bad("']' without a matching '['", nodelist)
        if depth == 0 and (ch == "," or ch.isspace()):
            parts.append("".join(current))
            current = []
        else:
            current.append(ch)
    if depth:
        raise _bad("'[' without a matching ']'", nodelist)
    parts.append("".join(current))
    return [p for p in parts if p]


def _expand_range(spec: str, nodelist: str) -> list[str]:
    """``001-004,007`` -> ['001', '002', '003', '004', '007']."""
    out: list[str] = []
    for item in spec.split(","):
        m = _RANGE.fullmatch(item.strip())
        if not m:
            raise _bad(f"bad range {item!r} (expected N or N-M)", nodelist)
        low, high = m.group(1), m.group(2) or m.group(1)
        if int(high) < int(low):
            raise _bad(f"descending range {item!r}", nodelist)
        out += [str(i).zfill(len(low)) for i in range(int(low), int(high) + 1)]
    return out


def _expand_pattern(pattern: str, nodelist: str) -> list[str]:
    """One host pattern, possibly with several bracket groups (cartesian product)."""
    hosts = [""]
    pos = 0
    for m in re.finditer(r"\[([^\]]*)\]", pattern):
        literal = pattern[pos:m.start()]
        hosts = [h + literal + n for h in hosts for n in _expand_range(m.group(1), nodelist)]
        pos = m.end()
    return [h + pattern[pos:] for h in hosts]


def expand(nodelist: str) -> list[str]:
    """All host names in a Slurm host list, in Slurm's order (duplicates kept, as Slurm does)."""
    return [host for part in _split_hosts(nodelist) for host in _expand_pattern(part, nodelist)]


def first(nodelist: str) -> str:
    """The first host: where rank 0 runs under srun, so the master address."""
    hosts = expand(nodelist)
    if not hosts:
        raise _bad("empty host list", nodelist)
    return hosts[0]


def tasks_per_node(spec: str) -> list[int]:
    """Expand Slurm's count syntax (``2(x3),1`` -> [2, 2, 2, 1]); also fits SLURM_JOB_CPUS_PER_NODE."""
    out: list[int] = []
    for part in spec.split(","):
        m = _COUNT.fullmatch(part.strip())
        if not m:
            raise WorldError(f"bad count {part.strip()!r} in {spec!r}", "tasks-per-node list",
                             "Slurm writes these like 2(x3),1")
        out += [int(m.group(1))] * int(m.group(2) or 1)
    return out
