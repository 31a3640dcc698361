"""One shard of a Slurm-array prediction, run on a compute node (``PredictPayload`` calls it).

Reads its contiguous slice of the manifest, predicts it with the run's checkpoint and writes
``shard-NNNNN/rows.csv`` atomically (present = done, so a rerun never trusts half a shard), then
``summary.json`` with its throughput for ``hpcnn status``. Relative inputs are read from the
directory the prediction was submitted from.
"""
from __future__ import annotations

import logging
import os
import socket
import time
from pathlib import Path

from ..env import job_info
from ..results import make_summary, write_summary
from . import manifest
from .listing import EntryList
from .predictor import load_predictor, predict_csv, progress_for

log = logging.getLogger("hpcnn.predict")


def run_shard(directory: str | Path, index: int) -> dict:
    from ..train.logs import setup_logging

    setup_logging(0)
    directory = Path(directory)
    spec = manifest.read_spec(directory)
    lo, hi = manifest.bounds(int(spec["inputs"]), int(spec["shards"]), index)
    entries = EntryList.write(manifest.read_manifest(directory, lo, hi))
    os.chdir(spec["cwd"])  # relative inputs mean what they meant on the login node
    opts = spec["options"]
    predictor = load_predictor(spec["run_dir"], spec["checkpoint"], opts["device"], opts["precision"],
                               opts["channels_last"], opts["compile"])
    log.info("shard %d of %d: inputs %d..%d on %s (%s)", index, spec["shards"], lo, hi - 1, predictor.device,
             socket.gethostname())
    t0 = time.perf_counter()
    bar = progress_for(len(entries), True, opts["log_every_s"], opts.get("log_every_batches", 0))
    errors = predict_csv(predictor, entries, manifest.rows_file(directory, index), spec["k"], opts["batch_size"],
                         opts["num_workers"], bar)
    seconds = time.perf_counter() - t0
    rate = len(entries) / max(seconds, 1e-9)
    info = job_info()
    write_summary(manifest.shard_dir(directory, index), make_summary(
        name=f"{spec['name']} shard {index}", status="completed", wall_seconds=seconds, images_per_second=rate,
        skipped_files=errors, device=str(predictor.device), host=socket.gethostname(),
        job={"job_id": info.job_id, "nodelist": info.nodelist} if info.job_id else None))
    log.info("shard %d: %d inputs (%d unreadable) in %.1f s: %.0f img/s", index, len(entries), errors, seconds, rate)
    return {"shard": index, "inputs": len(entries), "errors": errors, "seconds": seconds, "images_per_second": rate}


__all__ = ["run_shard"]
