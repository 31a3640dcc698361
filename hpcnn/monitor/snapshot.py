"""One sample of this node's job GPUs, as JSON lines on stdout: what `hpcnn top` runs on each node
(``srun --jobid=ID --overlap python -m hpcnn.monitor.snapshot``) and what `hpcnn gpus` shows.

Without a driver it prints one ``{"host": ..., "error": ...}`` line and still exits 0, so one
GPU-less node does not hide the others.
"""
from __future__ import annotations

import json
import socket
import sys

from .nvml import open_nvml


def snapshot() -> list[dict]:
    """One row per GPU allocated to this job on this node (all GPUs outside a job); [] without NVML."""
    nvml = open_nvml()
    if nvml is None:
        return []
    with nvml:  # frees the event sets and shuts NVML down again
        return nvml.sample()


def main() -> int:
    rows = snapshot()
    if not rows:
        rows = [{"host": socket.gethostname(), "error": "no GPU visible to NVML (no NVIDIA driver?)"}]
    sys.stdout.write("".join(json.dumps(r) + "\n" for r in rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
