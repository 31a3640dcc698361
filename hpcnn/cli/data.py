"""`hpcnn data generate | fetch | pack | inspect`: data sets made, downloaded, and laid out for a cluster.

SOURCE is what a user has at hand: a folder of class folders, an HDF5 file, a shard pack, or a job
config YAML (its data section, with key=value overrides). torch is imported only to fetch or pack.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path

from ..config import load_job, split_config_args
from ..data.inspect import advice, inspect_source
from .args import add_items, add_json, print_json

HDF5_SUFFIXES = (".h5", ".hdf5", ".hdf")


def data_config(items: list[str]):
    """The data section SOURCE stands for: a folder, HDF5 file or pack as the default job would read it, a job
    config's, or (no SOURCE, only overrides such as data.source=digits) the default job's."""
    source, overrides = split_config_args(items)
    if source is None:
        return load_job(None, overrides).data
    path = Path(source).expanduser()
    if path.is_dir() or path.suffix.lower() in HDF5_SUFFIXES:
        kind = "shards" if (path / "index.json").is_file() else "folder" if path.is_dir() else "hdf5"
        return dataclasses.replace(load_job(None, overrides).data, source=kind, root=str(path))
    return load_job(path, overrides).data


def cmd_data_generate(args) -> int:
    from ..data import synthetic

    fractions = None if args.no_splits else {"train": 0.7, "val": 0.15, "test": 0.15}
    print_json(synthetic.write_image_folder(args.out, args.n, size=args.size, seed=args.seed,
                                            split_fractions=fractions, fmt=args.format))
    return 0


def cmd_data_fetch(args) -> int:
    from ..data.sources import fetch

    print(f"downloaded {args.name} to {fetch(args.name, args.root)}")
    return 0


def cmd_data_pack(args) -> int:
    from ..data.pack import pack, parse_size
    from ..data.sources import load_splits

    shard_bytes = parse_size(args.shard_size)
    data = dataclasses.replace(data_config(args.items), stage="none")
    manifest = pack(load_splits(data), args.out, shard_bytes, {"source": data.source, "root": data.root,
                                                    "image_size": data.image_size, "channels": data.channels})
    summary = {name: {"images": s["count"], "shards": len(s["shards"]), "bytes": sum(x["bytes"] for x in s["shards"])}
               for name, s in manifest["splits"].items()}
    print_json({"out": str(Path(args.out).expanduser()), "classes": manifest["classes"],
                "skipped": len(manifest["skipped"]), "splits": summary})
    print(f"train from it with: data.source=shards data.root={Path(args.out).expanduser()}")
    return 0


def cmd_data_inspect(args) -> int:
    report = inspect_source(data_config(args.items), args.profile)
    if args.json:
        print_json({**report, "advice": advice(report)})
        return 0
    print(f"{report['kind']}: {report['root']}")
    print(f"  files: {report['files']:,}   size: {report['bytes'] / 1e6:,.1f} MB   "
          f"classes: {len(report['classes'])} ({', '.join(report['classes'][:10])}"
          f"{', ...' if len(report['classes']) > 10 else ''})")
    print(f"  file system: {report['fstype']}{' (shared)' if report['shared_fs'] else ''}")
    for line in advice(report):
        print(f"  advice: {line}")
    return 0


def register(sub) -> None:
    d = sub.add_parser("data", help="generate or fetch data sets")
    dsub = d.add_subparsers(dest="data_command", metavar="ACTION", required=True)
    g = dsub.add_parser("generate", help="write synthetic galaxies as a class-per-folder image tree")
    g.add_argument("--out", required=True)
    g.add_argument("--n", type=int, default=2000, help="number of images")
    g.add_argument("--size", type=int, default=64)
    g.add_argument("--seed", type=int, default=0)
    g.add_argument("--format", choices=["png", "jpg"], default="png")
    g.add_argument("--no-splits", action="store_true", help="one tree OUT/<class>/ instead of OUT/{train,val,test}/")
    g.set_defaults(func=cmd_data_generate)
    f = dsub.add_parser("fetch", help="download a torchvision data set (login node with internet; never in a job)")
    f.add_argument("name", help="CIFAR10, CIFAR100, MNIST, FashionMNIST, KMNIST, SVHN")
    f.add_argument("--root", required=True)
    f.set_defaults(func=cmd_data_fetch)

    p = dsub.add_parser("pack", help="write a data set as tar shards (WebDataset layout) with an index, split by split")
    add_items(p, nargs="+", metavar="SOURCE [key.sub=value ...]",
              help="a class-per-folder tree, an HDF5 file, or a job config YAML (its data section), and "
                   "overrides; only overrides: the default job's data (e.g. data.source=digits)")
    p.add_argument("--out", required=True, help="directory for the shards and index.json")
    p.add_argument("--shard-size", default="256MB", help="bytes per shard (e.g. 256MB, 1GB); default 256MB")
    p.set_defaults(func=cmd_data_pack)
    i = dsub.add_parser("inspect", help="file count, size and classes of a data set, and whether to pack or stage it")
    add_items(i, nargs="+", metavar="SOURCE [key.sub=value ...]",
              help="a class-per-folder tree, an HDF5 file, a shard pack, or a job config YAML, and overrides")
    i.add_argument("--profile", help="site profile whose local_scratch_gb bounds what can be staged")
    add_json(i)
    i.set_defaults(func=cmd_data_inspect)


__all__ = ["cmd_data_inspect", "cmd_data_pack", "data_config", "register"]
