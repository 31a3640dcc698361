"""File-system calls of a folder job on 1 and 2 ranks, and the verification a second job repeats.

    .venv/bin/python benchmarks/bench_data_listing.py [--files 20000] [--size 32] [--before OLD_TREE] [--dir DIR]
                                                      [--out X.json]

Prints one JSON object. Writes ``--files`` PNG galaxies (``synthetic.write_image_folder``), then runs
``torchrun --standalone --nproc_per_node=K -m hpcnn train`` (gloo, CPU, 1 epoch of 2 steps, then the
val/test evaluation) under ``strace -f -e trace=%file`` (every process: the torchrun agent, the ranks):

- ``cold``: no verification cache (removed first), the first job on this folder;
- ``warm``: the next job on the unchanged folder.

Per case: all file-system calls (``total``), those naming a path under the data folder (``data``), the
``openat`` calls among them, and the manifest's own count of files verified (opened to check) and
reused from the cache; ``processes``: the calls of the torchrun agent, of each rank (with its DataLoader
workers) and of other programs (``ldconfig``). ``baseline``: the same cold jobs on a folder of ``--tiny``
files: what a process costs whatever the data (on the software install, not the data: Python and torch
importing themselves, ~22,000 calls, and in a rank ``torch._dynamo``, ~16,000 more, which torch.optim
and DDP import on first use).
``above_baseline``: each cold case minus its baseline, the data's own.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from emit import emit  # benchmarks/emit.py: the script's own folder is on sys.path

REPO = Path(__file__).resolve().parents[1]
JOB = ["data.source=folder", "model.name=simple_cnn", "model.channels=[8,16]", "model.hidden=[32]",
       "train.epochs=1", "train.max_steps_per_epoch=2", "train.batch_size=64", "train.threads=1",
       "train.device=cpu", "dist.backend=gloo", "train.plots=false", "train.tensorboard=false",
       "monitor.enabled=false"]
CALL = re.compile(r'^(\d+)\s+(\w+)\((.*)')
SPAWN = ("clone", "clone3", "vfork", "fork")  # traced for the process tree only, never counted
RESUMED = re.compile(r'^(\d+)\s+<\.\.\. (\w+) resumed>(.*)')
CHILD = re.compile(r'= (\d+)$')


def count_calls(log: Path, data_root: str) -> dict:
    """Calls in an ``strace -f -o`` log (an interrupted call counted once), by kind, by path and by process."""
    total = data = data_open = 0
    parent, role, calls = {}, {}, {}
    for line in log.read_text(errors="replace").splitlines():
        m = CALL.match(line) or RESUMED.match(line)
        if not m:  # exits and signals
            continue
        pid, name, rest = int(m.group(1)), m.group(2), m.group(3)
        if name in SPAWN:
            child = CHILD.search(rest.strip())
            if child:
                parent[int(child.group(1))] = pid
            continue
        if "resumed>" in line:  # the rest of a call counted when it started
            continue
        role.setdefault(pid, role.get(parent.get(pid), "agent"))  # a thread or fork: its parent's
        if name == "execve" and calls:  # the first execve is the agent's own
            program = re.match(r'"([^"]*)"', rest)
            role[pid] = f"rank {pid}" if program and "python" in program.group(1) else "other"
        calls[role[pid]] = calls.get(role[pid], 0) + 1
        total += 1
        if f'"{data_root}' in rest:
            data += 1
            data_open += name in ("open", "openat", "openat2")
    ranks = [n for r, n in calls.items() if r.startswith("rank")]
    return {"total": total, "data": data, "data_openat": data_open,
            "processes": {"agent": calls.get("agent", 0), "ranks": ranks, "other": calls.get("other", 0)}}


def run_case(ranks: int, root: Path, size: int, work: Path, name: str, cold: bool, tree: Path = REPO) -> dict:
    """One strace'd job; ``tree``: the hpcnn source tree to run (another checkout: the code before a change)."""
    run_dir, log = work / f"run-{name}", work / f"strace-{name}.log"
    if cold:
        (root / ".hpcnn-verified.json").unlink(missing_ok=True)
    shutil.rmtree(run_dir, ignore_errors=True)
    cmd = ["strace", "-f", "-qq", "-e", f"trace=%file,{','.join(SPAWN)}", "-o", str(log), sys.executable, "-m",
           "torch.distributed.run", "--standalone", f"--nproc_per_node={ranks}", "-m", "hpcnn", "train", *JOB,
           f"data.root={root}", f"data.image_size={size}", f"--run-dir={run_dir}"]
    t0 = time.perf_counter()
    env = dict(os.environ, PYTHONPATH=str(tree)) if tree != REPO else None
    proc = subprocess.run(cmd, cwd=tree, capture_output=True, text=True, timeout=3600, env=env)
    seconds = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"{name} failed ({proc.returncode}): {proc.stderr[-3000:]}")
    calls = count_calls(log, str(root))
    manifest = run_dir / "data-manifest.json"
    stats = json.loads(manifest.read_text())["stats"] if manifest.is_file() else {"verified": None, "reused": None}
    log.unlink()
    return {"case": name, "ranks": ranks, **calls, "verified": stats["verified"], "reused": stats["reused"],
            "seconds": round(seconds, 1)}


def image_folder(root: Path, n: int, size: int) -> Path:
    if not root.is_dir():
        from hpcnn.data import synthetic

        synthetic.write_image_folder(root, n, size=size)
    return root


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--files", type=int, default=20000)
    p.add_argument("--size", type=int, default=32)
    p.add_argument("--tiny", type=int, default=400, help="files of the baseline folder")
    p.add_argument("--before", help="also run the cold cases with this hpcnn source tree (e.g. `git archive` of "
                                    "the commit before a change, unpacked)")
    p.add_argument("--dir", help="work directory (kept, and its image folder reused); default a temporary one")
    p.add_argument("--out", help="also write the JSON here")
    args = p.parse_args()
    if not shutil.which("strace"):
        raise SystemExit("needs strace (apt-get install strace)")
    work = Path(args.dir or tempfile.mkdtemp(prefix="hpcnn-bench-listing-"))
    root = image_folder(work / "images", args.files, args.size)
    tiny = image_folder(work / "tiny", args.tiny, args.size)
    baseline = {ranks: run_case(ranks, tiny, args.size, work, f"baseline-{ranks}rank", True) for ranks in (1, 2)}
    cases = [run_case(ranks, root, args.size, work, f"{ranks}rank-{state}", state == "cold")
             for ranks, state in ((1, "cold"), (2, "cold"), (2, "warm"), (1, "warm"))]
    if args.before:
        cases += [run_case(ranks, root, args.size, work, f"before-{ranks}rank-cold", True, Path(args.before).resolve())
                  for ranks in (1, 2)]
    by = {c["case"]: c for c in cases}
    one, two, warm = by["1rank-cold"], by["2rank-cold"], by["2rank-warm"]
    report = {"benchmark": "data_listing", "date": time.strftime("%Y-%m-%d"), "host": platform.node(),
              "cpus": os.cpu_count(), "python": platform.python_version(), "files": args.files,
              "image_size": args.size, "cases": cases, "baseline": list(baseline.values()),
              "above_baseline": {"1rank": one["total"] - baseline[1]["total"],
                                 "2rank": two["total"] - baseline[2]["total"]},
              "ratio_2_to_1_rank_total": round(two["total"] / one["total"], 3),
              "ratio_2_to_1_rank_above_baseline": round((two["total"] - baseline[2]["total"]) /
                                                        (one["total"] - baseline[1]["total"]), 3),
              "ratio_2_to_1_rank_data": round(two["data"] / one["data"], 3),
              "second_job_verification_opens": f"{warm['verified']} of {two['verified']}",
              **({"before_ratio_2_to_1_rank_total": round(by["before-2rank-cold"]["total"] /
                                                          by["before-1rank-cold"]["total"], 3)} if args.before else {}),
              "command": "python benchmarks/bench_data_listing.py " + " ".join(sys.argv[1:])}
    emit(report, args.out)
    if not args.dir:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
