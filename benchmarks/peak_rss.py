"""One way for memory benchmarks to run ``hpcnn`` and learn its peak memory: a ``PEAK_RSS {json}`` line.

``python -c MEASURE ARGS...`` runs ``hpcnn ARGS...`` in this process and prints, at the end, this
process's own high-water mark (``VmHWM``, not ``ru_maxrss``: Linux carries the parent's high-water mark
into ru_maxrss across fork + exec), its children's (DataLoader workers), its rank and its exit code.
"""
from __future__ import annotations

import json
import re

MEASURE = """
import json, os, resource, runpy, sys
sys.argv = ["hpcnn", *sys.argv[1:]]
code = 0
try:
    runpy.run_module("hpcnn", run_name="__main__", alter_sys=True)
except SystemExit as exit:
    code = exit.code or 0
hwm = int([line for line in open("/proc/self/status") if line.startswith("VmHWM:")][0].split()[1])
print("PEAK_RSS " + json.dumps({"rank": int(os.environ.get("RANK", 0)), "self_kib": hwm, "exit": code,
                                "children_kib": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss}), flush=True)
"""


def peaks(stdout: str) -> list[dict]:
    """Every ``PEAK_RSS`` record in a run's output (one per rank), by rank; two ranks' records may share a line."""
    return sorted((json.loads(m.group(1)) for m in re.finditer(r"PEAK_RSS (\{[^{}]*\})", stdout)),
                  key=lambda p: p["rank"])
