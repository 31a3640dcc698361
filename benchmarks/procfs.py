"""Memory of a process tree from /proc (Linux), for the memory benchmarks."""
from __future__ import annotations

import os


def process_tree(pid: int) -> list[int]:
    """pid and its descendants."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                ppid = int(open(f"/proc/{entry}/stat").read().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(entry))
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo += children.get(p, [])
    return out


def field_kib(path: str, key: str) -> int:
    """A `Key:   N kB` line of a /proc file (e.g. status VmRSS, smaps_rollup Pss); 0 once the process is gone."""
    try:
        for line in open(path):
            if line.startswith(key + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def rss_kib(pid: int) -> int:
    return field_kib(f"/proc/{pid}/status", "VmRSS")


def pss_kib(pid: int) -> int:
    """Proportional set size: pages shared by N processes count 1/N each (memory held once per node shows once)."""
    return field_kib(f"/proc/{pid}/smaps_rollup", "Pss")
