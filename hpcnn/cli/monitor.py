"""`hpcnn top JOB_ID`, `hpcnn gpus`, `hpcnn report RUN_DIR`, `hpcnn memory BENCH.json...`: GPU views
a user can act on.

`top` runs hpcnn's own one-shot sampler on the job's nodes through
``srun --jobid=JOB_ID --overlap`` (no ssh, no daemon), and takes the job's position from
``progress.json`` in its run directory (found through the job records of `hpcnn submit`),
else from the newest tagged sample in the run's GPU series. On a terminal it redraws in
place; piped it prints one snapshot (``--watch`` keeps printing); it ends when the job ends.
"""
from __future__ import annotations

import contextlib
import json
import socket
import sys
import time
from pathlib import Path

from ..env.hostlist import expand
from ..errors import HpcnnError
from ..monitor.advice import limit
from ..monitor.memory import memory_advice
from ..monitor.report import make_report
from ..monitor.series import latest_rows, read_progress
from ..monitor.snapshot import snapshot
from ..monitor.table import position_text, render
from ..slurm.jobs.records import JOB_FILE, SWEEP_FILE, lookup
from ..slurm.site import commands
from .args import add_json, print_json

CLEAR = "\x1b[H\x1b[2J"


def find_run_dir(job_id: str) -> Path | None:
    """The run directory `hpcnn submit`/`sweep` recorded for this job id (an array task in its sweep), or None."""
    for key in (job_id, job_id.split("_")[0]):  # as given, then an array task's array id
        directory = lookup(key)
        if directory is None:
            continue
        if (directory / JOB_FILE).is_file() or not (directory / SWEEP_FILE).is_file():
            return directory
        try:
            sweep = json.loads((directory / SWEEP_FILE).read_text())
        except (OSError, ValueError):
            return None
        for task in sweep.get("tasks", []):
            if str(task.get("job_id")) == job_id and task.get("run_dir"):
                return directory / task["run_dir"]
    return None


def _job_state(job_id: str):
    """squeue for a live job (accounting lags a few seconds behind), sacct once squeue forgot it."""
    return commands.squeue([job_id]).get(job_id) or commands.query_states([job_id]).get(job_id)


def _job_position(run_dir: Path | None) -> dict | None:
    where = read_progress(run_dir)
    if where is not None or run_dir is None:
        return where
    tagged = [r for r in latest_rows(run_dir) if r.get("stage")]
    return max(tagged, key=lambda r: r["time"]) if tagged else None


def snapshot_job(job_id: str, nodes: int, timeout: float) -> list[dict]:
    """One sample of every GPU of the job, from every node (rows with "error" are nodes without NVML)."""
    proc = commands.srun_overlap(job_id, nodes, [sys.executable, "-m", "hpcnn.monitor.snapshot"], timeout=timeout)
    rows = []
    for line in proc.stdout.splitlines():
        with contextlib.suppress(ValueError):  # a line that is not a sample (a warning) is passed over
            rows.append(json.loads(line))
    return rows


def _frame(job_id: str, state, rows: list[dict], where: dict | None, run_dir: Path | None) -> str:
    gpus = [r for r in rows if "error" not in r]
    errors = "".join(f"\n{r.get('host', '?')}: {r['error']}" for r in rows if "error" in r)
    head = (f"job {job_id} {state.state} on {state.nodes} — {time.strftime('%H:%M:%S')} — "
            f"job at: {position_text(where)}" + (f" — {run_dir}" if run_dir else ""))
    return render(gpus, where, head) + errors


def cmd_top(args) -> int:
    job_id = str(args.job_id)
    run_dir = Path(args.run_dir) if args.run_dir else find_run_dir(job_id)
    live = sys.stdout.isatty() and not args.once
    repeat = (live or args.watch) and not args.once
    seen = False
    while True:
        state = _job_state(job_id)
        if state is None and seen:  # squeue (no accounting) forgets a job once it ended
            print(f"job {job_id} has ended", flush=True)
            return 0
        if state is None:
            raise HpcnnError(f"Slurm does not know job {job_id}", "hpcnn top", "check the id with `squeue --me`")
        if state.finished or state.state not in ("RUNNING", "PENDING", "CONFIGURING", "COMPLETING", "SUSPENDED"):
            print(f"job {job_id} has ended ({state.state})", flush=True)
            return 0
        seen = True
        if state.state != "RUNNING":
            text = f"job {job_id} is {state.state}" + (f" ({state.reason})" if state.reason else "")
        else:
            try:
                rows = snapshot_job(job_id, len(expand(state.nodes)), args.timeout)
            except HpcnnError:
                later = _job_state(job_id)
                if later is not None and later.state != "RUNNING":
                    continue  # it ended while we sampled: the next pass says so
                raise
            text = _frame(job_id, state, rows, _job_position(run_dir), run_dir)
        print((CLEAR if live else "") + text + ("\n" if repeat and not live else ""), flush=True)
        if not repeat:
            return 0
        time.sleep(args.interval)


def cmd_gpus(args) -> int:
    rows = snapshot()
    if args.json:
        print_json(rows)
    elif not rows:
        print(f"{socket.gethostname()}: no GPU visible to NVML (no NVIDIA driver, or nvidia-ml-py missing)")
    else:
        print(render(rows))
    return 0


def cmd_report(args) -> int:
    md, pngs = make_report(Path(args.run_dir), Path(args.out) if args.out else None)
    print(f"GPU report: {md}")
    for png in pngs:
        print(f"  {png}")
    return 0


def cmd_memory(args) -> int:
    target = args.target if args.target is not None else limit("MEMORY_TARGET_FRACTION")
    result = memory_advice([Path(p) for p in args.bench], args.capacity_mib, target)
    if args.json:
        print_json(result)
        return 0
    print(f"peak memory = {result['fixed_mib']:,.0f} MiB + {result['per_image_mib']:,.1f} MiB per image "
          f"(fit through batches {', '.join(map(str, result['batches']))}; {result['peak_memory_kind']})")
    print(f"about {result['batch_that_fits']} images per GPU per forward pass (batch_size_per_rank / accumulate) "
          f"fit in {target:.0%} of {result['capacity_mib']:,.0f} MiB; the rest is left for the CUDA context "
          "and the allocator's slack, which PyTorch's peak does not count")
    return 0


def register(subparsers) -> None:
    t = subparsers.add_parser("top", help="live per-GPU table of a running Slurm job (from the login node)",
                              description="Sample the GPUs of a running job on its nodes (srun --jobid --overlap) "
                              "and show utilisation, memory, power, temperature, throttling and where training is. "
                              "Redraws on a terminal; one snapshot when piped; ends when the job ends.")
    t.add_argument("job_id", metavar="JOB_ID")
    t.add_argument("--once", action="store_true", help="print one snapshot and exit")
    t.add_argument("--watch", action="store_true", help="keep printing snapshots even when not on a terminal")
    t.add_argument("--interval", type=float, default=5.0, help="seconds between refreshes (default: 5)")
    t.add_argument("--timeout", type=float, default=60.0, help="seconds one srun sampling may take (default: 60)")
    t.add_argument("--run-dir", metavar="DIR", help="the job's run directory, when hpcnn did not submit it")
    t.set_defaults(func=cmd_top)
    g = subparsers.add_parser("gpus", help="per-GPU table of this node's (this job's) GPUs",
                              description="One NVML sample of the GPUs this shell may use (Slurm's allocation or "
                              "CUDA_VISIBLE_DEVICES; all GPUs outside a job).")
    add_json(g, help="the raw rows as JSON")
    g.set_defaults(func=cmd_gpus)
    r = subparsers.add_parser("report", help="GPU plots and a Markdown summary of a finished (or running) run",
                              description="PNG plots of utilisation, memory, power and clocks per GPU over time "
                              "with stage bands, and the GPU summary as Markdown, in RUN_DIR/gpu_report/.")
    r.add_argument("run_dir", metavar="RUN_DIR")
    r.add_argument("--out", metavar="DIR", help="where to write (default: RUN_DIR/gpu_report)")
    r.set_defaults(func=cmd_report)
    m = subparsers.add_parser("memory", help="per-image GPU memory and the batch that fits, from bench results",
                              description="Fit peak memory = fixed + per-image x batch through `hpcnn bench` results "
                              "of one job at two or more batch sizes, and print the batch that fills the target "
                              "share of the GPU's memory.")
    m.add_argument("bench", nargs="+", metavar="BENCH.json", help="`hpcnn bench --out` files (two or more batches)")
    m.add_argument("--capacity-mib", type=float, help="GPU memory (default: from the results' NVML samples)")
    m.add_argument("--target", type=float, help="share of the GPU's memory to fill (default: 0.85)")
    add_json(m, help="the fit as JSON")
    m.set_defaults(func=cmd_memory)


__all__ = ["cmd_gpus", "cmd_memory", "cmd_report", "cmd_top", "find_run_dir", "register"]
