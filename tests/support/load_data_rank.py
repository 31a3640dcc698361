"""One rank of a data-only job: join the process group, load the splits as a training job does, report.

    python tests/support/load_data_rank.py OUT_DIR OVERRIDE...   (alone, or under torchrun)

Writes OUT_DIR/rank<R>.json: proportional set size before/after loading (``smaps_rollup``), peak RSS,
a digest of the training images (or file paths) and labels, and the node-shared files left in the shm
directory. OUT_DIR is the job's run directory (a folder's manifest is written there).
Every rank measures while all ranks still hold their data (a barrier on each side).
"""
from __future__ import annotations

import hashlib
import json
import os
import sys
from pathlib import Path


def rollup() -> dict:
    out = {}
    for line in open("/proc/self/smaps_rollup"):
        parts = line.split()
        if parts[0] in ("Pss:", "Pss_Anon:", "Pss_Shmem:", "Rss:"):
            out[parts[0].rstrip(":")] = int(parts[1])
    return out


def hwm_kib() -> int:
    return int([line for line in open("/proc/self/status") if line.startswith("VmHWM:")][0].split()[1])


def content_digest(dataset) -> str:
    """Of the images (or file paths), rows and labels, without copying the images."""
    h = hashlib.sha256()
    if hasattr(dataset, "paths"):
        h.update("\n".join(dataset.paths).encode())
    else:
        h.update(memoryview(dataset.base.numpy()).cast("B"))
        h.update(b"" if dataset.index is None else dataset.index.numpy().tobytes())
    h.update(dataset.labels.numpy().tobytes())
    return h.hexdigest()


def main() -> int:
    import torch

    from hpcnn.config import load_job
    from hpcnn.data import jobscope
    from hpcnn.data.node_memory import PREFIX, shm_dir
    from hpcnn.data.sources import load_splits
    from hpcnn.dist import make_comm
    from hpcnn.env import detect_world

    out, overrides = Path(sys.argv[1]), sys.argv[2:]
    cfg = load_job(None, overrides)
    world = detect_world()
    comm = make_comm(world, "gloo", torch.device("cpu"), 120)
    try:
        import h5py  # noqa: F401 - its libraries are not the data: load them before measuring
    except ImportError:
        pass
    comm.barrier()
    before, hwm_before = rollup(), hwm_kib()
    with jobscope.bound(comm, out):  # OUT is the run directory: a folder's manifest goes there
        splits = load_splits(cfg.data)
    digest = content_digest(splits.train)  # reads every image: every rank maps all of the node's copy
    comm.barrier()
    after = rollup()
    train = splits.train
    where = shm_dir()
    left = sorted(p.name for p in where.glob(PREFIX + "*")) if where else []
    comm.barrier()  # nobody lets go of the data before everyone has measured
    (out / f"rank{comm.rank}.json").write_text(json.dumps(
        {"rank": comm.rank, "before": before, "after": after, "hwm_before_kib": hwm_before, "hwm_kib": hwm_kib(),
         "digest": digest, "n_train": len(train), "shm_left": left, "pid": os.getpid()}))
    comm.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
