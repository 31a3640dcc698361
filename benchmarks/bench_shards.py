"""Input pipeline from a shard pack vs the same images as a folder of files (same splits, same loader).

    .venv/bin/python benchmarks/bench_shards.py [--n 20000] [--size 32] [--workers 2] [--repeats 3] [--out F]
    .venv/bin/python benchmarks/bench_shards.py --n 2000 --shard-size 1MB --count-opens   # needs strace

Writes N synthetic PNGs as a class-per-folder tree, packs it with `hpcnn data pack` (256 MB shards by
default), then for each source, alternating, `repeats` times: the start-up (``load_splits``: listing and
verifying a folder, reading the indexes of a pack) and one epoch of the training loader
(RankBatchSampler + DataLoader with ``--workers`` processes, decode + resize to ``--size``), images/s.
Then stages the pack (``data.stage``) to a fresh directory and again (the reuse check of a requeued job):
copy + hash, and re-hash. Prints one JSON object (medians) with the pack's size and time. With
``--count-opens``, one more epoch of each source runs under ``strace -f`` and the image / shard opens are counted. Both sources are read warm from the page
cache on this machine; on a parallel file system the folder also pays one metadata round trip per file.
"""
from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.emit import emit  # noqa: E402
from hpcnn.config import load_job  # noqa: E402
from hpcnn.data import synthetic  # noqa: E402
from hpcnn.data.loaders import RankBatchSampler, make_loader  # noqa: E402
from hpcnn.data.sources import load_splits  # noqa: E402
from hpcnn.data.staging import copy_to  # noqa: E402


def one_epoch(source: str, root: Path, args) -> dict:
    cfg = load_job(None, [f"data.source={source}", f"data.root={root}", f"data.image_size={args.size}",
                          f"data.num_workers={args.workers}"]).data
    t0 = time.perf_counter()
    train = load_splits(cfg).train
    startup = time.perf_counter() - t0
    sampler = RankBatchSampler(len(train), args.batch, 0, 1, seed=0)
    loader = make_loader(train, sampler, args.workers, pin_memory=False)
    t0, images = time.perf_counter(), 0
    for x, _ in loader:
        images += len(x)
    epoch = time.perf_counter() - t0
    return {"startup_s": startup, "epoch_s": epoch, "images": images, "images_per_s": images / epoch}


def staging(pack: Path, target: Path) -> dict:
    """Seconds to stage the pack (copy, hashing on the way) and to verify that copy again (a requeue's reuse)."""
    cfg = load_job(None, ["data.source=shards", f"data.root={pack}"]).data
    t0 = time.perf_counter()
    assert copy_to(cfg, target) == "copied"
    copied = time.perf_counter() - t0
    t0 = time.perf_counter()
    assert copy_to(cfg, target) == "reused"
    return {"stage_copy_s": round(copied, 3), "stage_reuse_s": round(time.perf_counter() - t0, 3)}


def count_opens(source: str, root: Path, args, trace: Path) -> dict:
    """Image-file and shard opens of one epoch in a fresh process and its workers (strace -f, openat only)."""
    argv = ["strace", "-f", "-qq", "--seccomp-bpf", "-e", "trace=openat", "-o", str(trace), sys.executable,
            __file__, "--one", source, str(root), "--size", str(args.size), "--workers", str(args.workers),
            "--batch", str(args.batch)]
    subprocess.run(argv, check=True, capture_output=True, timeout=3600)
    text = trace.read_text()
    return {"image_opens": text.count('.png"'), "shard_opens": text.count('.tar"'),
            "openat_calls": text.count("openat(")}


def median(runs: list[dict], key: str) -> float:
    return statistics.median(r[key] for r in runs)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=20000, help="images in the folder")
    p.add_argument("--size", type=int, default=32)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--batch", type=int, default=256)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--shard-size", default="256MB")
    p.add_argument("--count-opens", action="store_true", help="also count one epoch's opens under strace")
    p.add_argument("--one", nargs=2, metavar=("SOURCE", "ROOT"), help=argparse.SUPPRESS)
    p.add_argument("--out")
    args = p.parse_args()
    if args.one:
        emit(one_epoch(args.one[0], Path(args.one[1]), args), None)
        return 0
    with tempfile.TemporaryDirectory(prefix="bench-shards-") as tmp:
        folder, pack = Path(tmp) / "folder", Path(tmp) / "pack"
        synthetic.write_image_folder(folder, args.n, size=args.size, seed=0,
                                     split_fractions={"train": 0.8, "val": 0.1, "test": 0.1}, fmt="png")
        t0 = time.perf_counter()
        subprocess.run([sys.executable, "-m", "hpcnn", "data", "pack", str(folder), f"data.image_size={args.size}",
                        "--out", str(pack), "--shard-size", args.shard_size], check=True, capture_output=True,
                       timeout=3600)
        pack_s = time.perf_counter() - t0
        runs = {"folder": [], "shards": []}
        for _ in range(args.repeats):
            runs["folder"].append(one_epoch("folder", folder, args))
            runs["shards"].append(one_epoch("shards", pack, args))
        result = {"benchmark": "shards", "n_images": args.n, "size": args.size, "workers": args.workers,
                  "batch": args.batch, "repeats": args.repeats, "pack_s": round(pack_s, 2),
                  "folder_files": sum(1 for _ in folder.rglob("*.png")),
                  "folder_mb": round(sum(f.stat().st_size for f in folder.rglob("*.png")) / 1e6, 2),
                  "pack_files": sum(1 for _ in pack.iterdir()),
                  "pack_mb": round(sum(f.stat().st_size for f in pack.glob("*.tar")) / 1e6, 2)}
        for source, rs in runs.items():
            result[source] = {k: round(median(rs, k), 3) for k in ("startup_s", "epoch_s", "images_per_s")}
        if args.count_opens:
            result["opens"] = {source: count_opens(source, root, args, Path(tmp) / f"{source}.strace")
                               for source, root in (("folder", folder), ("shards", pack))}
        result.update(staging(pack, Path(tmp) / "stage"))
        result["stage_copy_mb_per_s"] = round(result["pack_mb"] / result["stage_copy_s"], 1)
        result["shards_vs_folder_images_per_s"] = round(result["shards"]["images_per_s"] /
                                                        result["folder"]["images_per_s"], 3)
    emit(result, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
