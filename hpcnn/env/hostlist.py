"""Slurm hostlist and tasks-per-node syntax, expanded without calling ``scontrol``.

``gpu[001-004,007]`` -> gpu001 gpu002 gpu003 gpu004 gpu007; ``a[1-2]-b[3-4]`` is a
cartesian product; ``2(x3),1`` -> [2, 2, 2, 1].
"""
from __future__ import annotations

import re

from ..errors import WorldError


def _split_top(text: str) -> list[str]:
    """Split on commas that are not inside brackets."""
    parts, depth, cur = [], 0, []
    for ch in text:
        if ch == "[":
            depth += 1
        elif ch == "]":
            depth -= 1
            if depth < 0:
                raise WorldError(f"unbalanced brackets in host list {text!r}")
        if ch == "," and depth == 0:
            parts.append("".join(cur))
            cur = []
        else:
            cur.append(ch)
    if depth:
        raise WorldError(f"unbalanced brackets in host list {text!r}")
    parts.append("".join(cur))
    return [p for p in (s.strip() for s in parts) if p]


def _range(spec: str, whole: str) -> list[str]:
    out = []
    for item in spec.split(","):
        item = item.strip()
        m = re.fullmatch(r"(\d+)(?:-(\d+))?", item)
        if not m:
            raise WorldError(f"bad range {item!r} in host list {whole!r}")
        lo, hi = m.group(1), m.group(2) or m.group(1)
        width = len(lo)
        if int(hi) < int(lo):
            raise WorldError(f"descending range {item!r} in host list {whole!r}")
        out += [str(i).zfill(width) for i in range(int(lo), int(hi) + 1)]
    return out


def _expand_one(pattern: str, whole: str) -> list[str]:
    m = re.search(r"\[([^\]]*)\]", pattern)
    if not m:
        return [pattern]
    head, tail = pattern[:m.start()], pattern[m.end():]
    return [head + r + rest for r in _range(m.group(1), whole) for rest in _expand_one(tail, whole)]


def expand(nodelist: str) -> list[str]:
    return [h for part in _split_top(nodelist) for h in _expand_one(part, nodelist)]


def first(nodelist: str) -> str:
    hosts = expand(nodelist)
    if not hosts:
        raise WorldError(f"empty host list {nodelist!r}")
    return hosts[0]


def tasks_per_node(spec: str) -> list[int]:
    out = []
    for part in spec.split(","):
        m = re.fullmatch(r"\s*(\d+)(?:\(x(\d+)\))?\s*", part)
        if not m:
            raise WorldError(f"bad tasks-per-node value {spec!r}")
        out += [int(m.group(1))] * int(m.group(2) or 1)
    return out
