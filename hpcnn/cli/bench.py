"""``hpcnn bench`` (a training config's throughput) and ``hpcnn bench allreduce`` (a size sweep).

torch is imported only when the benchmark runs.
"""
from __future__ import annotations

import argparse
import json

from ..config import load_job, split_config_args
from ..errors import ConfigError
from .args import add_items, print_json

HELP = """examples:
  hpcnn bench                                          # the default job, synthetic batches, this device
  hpcnn bench jobs/galaxies_folder.yaml --data real --out bench.json   # the config's own input pipeline
  torchrun --nproc_per_node=4 -m hpcnn bench jobs/x.yaml train.batch_size=1024
  torchrun --nproc_per_node=2 -m hpcnn bench allreduce --sizes 1K..64M --iters 20
"""


def cmd_bench(args) -> int:
    if args.items and args.items[0] == "allreduce":
        return _allreduce(args, args.items[1:])
    from ..bench.run import bench_job

    path, overrides = split_config_args(args.items)
    result = bench_job(load_job(path, overrides), args.out, args.data, args.warmup, args.steps, args.windows)
    if result is not None:
        print_json(result)
    return 0


def _allreduce(args, rest: list[str]) -> int:
    from ..bench.allreduce import run_allreduce, table

    if rest:
        raise ConfigError(f"hpcnn bench allreduce takes no config or overrides (got {' '.join(rest)})",
                          "command line", "use --sizes, --iters, --warmup, --backend")
    result = run_allreduce(args.sizes, args.iters, args.warmup, args.backend, args.out)
    if result is not None:
        print(table(result))
        print(json.dumps({k: result[k] for k in ("world_size", "backend", "alpha_s", "beta_bytes_per_s")}))
    return 0


def register(sub) -> None:
    b = sub.add_parser("bench", help="throughput of a training config (no epochs), or an allreduce sweep",
                       description="Measure images/s and the step-time split of a job config on this launch "
                       "(any launcher, like `hpcnn train`), or with `allreduce` an allreduce size sweep with "
                       "its latency/bandwidth fit. Rank 0 prints JSON.", epilog=HELP,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    add_items(b, metavar="[CONFIG|allreduce] [key.sub=value ...]",
              help="job config YAML (default: the built-in default job) and overrides; or `allreduce`")
    b.add_argument("--out", help="also write the JSON here (atomically)")
    b.add_argument("--warmup", type=int, default=5, help="warm-up steps (or allreduces per size); default 5")
    g = b.add_argument_group("config benchmark")
    g.add_argument("--data", choices=["synthetic", "real"], default="synthetic",
                   help="synthetic: one batch generated on the device; real: the config's input pipeline")
    g.add_argument("--steps", type=int, default=20, help="steps per timed window (and in the split pass)")
    g.add_argument("--windows", type=int, default=3, help="timed windows (images/s: median, min, max)")
    a = b.add_argument_group("allreduce sweep")
    a.add_argument("--sizes", help="message sizes: LOW..HIGH doubling, or a list (default 1K..256M on NCCL, "
                   "1K..16M on gloo)")
    a.add_argument("--iters", type=int, default=20, help="timed allreduces per size")
    a.add_argument("--backend", choices=["auto", "nccl", "gloo"], default="auto")
    b.set_defaults(func=cmd_bench)
