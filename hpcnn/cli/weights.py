"""`hpcnn weights fetch | list`: pretrained torchvision weights for clusters whose nodes have no internet.

Fetch on a login node; jobs then read the cache (``model.weights_cache``, else $TORCH_HOME, else
~/.cache/torch) and never download. torch is imported only when a command runs.
"""
from __future__ import annotations

import argparse

from ..config.weights_names import cache_root, checkpoints_dir, parse_weights_name
from ..runlist import human_size
from ..tables import format_table
from .args import add_json, print_json

NAME_HELP = ("MODEL.ENTRY, e.g. resnet18.IMAGENET1K_V1 or resnet50.DEFAULT; MODEL alone = its DEFAULT; "
             "the enum name ResNet50_Weights.IMAGENET1K_V2 works too")
CACHE_HELP = "cache directory, laid out like TORCH_HOME (default: $TORCH_HOME, else ~/.cache/torch)"


def _label(ref) -> str:
    return ref.name + (" (DEFAULT)" if ref.is_default else "")


def cmd_fetch(args) -> int:
    from ..models.weights import fetch

    refs = [parse_weights_name(name) for name in args.names]  # every name checked before any download
    cache = cache_root(args.cache)
    for ref in refs:
        path, downloaded = fetch(ref, cache, args.mirror, args.timeout)
        state = f"fetched, SHA-256 {ref.hash_prefix}... verified" if downloaded else "already cached"
        print(f"{ref.name}: {path} ({human_size(path.stat().st_size)}, {state})")
    print(f"jobs find them with model.weights_cache: {cache} (or TORCH_HOME={cache})")
    return 0


def cmd_list(args) -> int:
    from ..models.weights import cached_files

    cache = cache_root(args.cache)
    files = cached_files(cache)
    if args.json:
        print_json([{"file": str(f.path), "bytes": f.size, "weights": [r.name for r in f.refs]} for f in files])
    elif not files:
        print(f"no weights cached in {checkpoints_dir(cache)}; fetch some with: "
              f"hpcnn weights fetch resnet18.DEFAULT --cache {cache}")
    else:
        print(f"# {checkpoints_dir(cache)}")
        print(format_table([(human_size(f.size), f.path.name,
                             ", ".join(_label(r) for r in f.refs) or "(not a known torchvision weights file)")
                            for f in files], align="r"))
    return 0


def register(subparsers) -> None:
    w = subparsers.add_parser("weights", help="fetch pretrained torchvision weights (login node) and list the cache",
                              description="Pretrained weights for jobs without internet: fetch them on a login node "
                              "into a cache laid out like TORCH_HOME, then use model.weights: NAME in jobs.")
    wsub = w.add_subparsers(dest="weights_command", metavar="ACTION", required=True)
    f = wsub.add_parser("fetch", help="download and verify weights into the cache (needs internet or a mirror)",
                        epilog="example: hpcnn weights fetch resnet18.IMAGENET1K_V1 resnet50 --cache "
                        "/project/torch-cache", formatter_class=argparse.RawDescriptionHelpFormatter)
    f.add_argument("names", nargs="+", metavar="NAME", help=NAME_HELP)
    f.add_argument("--cache", help=CACHE_HELP)
    f.add_argument("--mirror", help="site copy replacing https://download.pytorch.org/models/: a URL or a directory "
                   "with the files under their torchvision names (default: $HPCNN_WEIGHTS_MIRROR)")
    f.add_argument("--timeout", type=float, default=60.0, help="network timeout in seconds (default 60)")
    f.set_defaults(func=cmd_fetch)
    ls = wsub.add_parser("list", help="show the cached weights files with sizes and the weights they hold")
    ls.add_argument("--cache", help=CACHE_HELP)
    add_json(ls)
    ls.set_defaults(func=cmd_list)


__all__ = ["register"]
