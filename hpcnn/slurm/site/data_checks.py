"""The data checks that are cheap on the login node: class folders and split sizes against the global batch.

A data set smaller than one global batch fails only when the job starts, hours later. Counting
is cheap: a folder's images are counted by name with ``os.scandir`` (the directory entries, no
file is opened), the way the job lists them (``hpcnn.data.listing``); synthetic and digits sizes
follow from the config. The split fractions are applied per class as the job's stratified split
does. Whether each image decodes is left to the job (``data.verify``). Torch-free, like all of
the slurm layer: nothing here imports ``hpcnn.data``.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, replace
from pathlib import Path

from ...config import JobConfig
from ...errors import ConfigError, DatasetError
from .resources import Resources

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp"}  # = data.listing's
SPLITS = ("train", "val", "test")
DIGITS_PER_CLASS = (178, 182, 177, 183, 181, 182, 181, 179, 174, 180)  # sklearn's load_digits, classes 0..9


@dataclass(frozen=True)
class SplitCounts:
    """Images per class in each split, as the job will see them."""

    classes: tuple
    train: tuple
    val: tuple
    source: str  # what was counted, for the error message

    @property
    def n_train(self) -> int:
        return sum(self.train)


def _count_images(directory: str) -> int:
    """Image files under ``directory``, recursively, symlinked folders not followed (as data.listing walks)."""
    try:
        with os.scandir(directory) as it:
            entries = list(it)
    except OSError as err:
        raise DatasetError(f"cannot list {directory}: {err.strerror}", "data.root", "check the permissions") from None
    return sum(_count_images(entry.path) if entry.is_dir(follow_symlinks=False)
               else int(os.path.splitext(entry.name)[1].lower() in IMAGE_SUFFIXES) for entry in entries)


def _class_folders(folder: Path) -> dict[str, int]:
    try:
        with os.scandir(folder) as it:
            names = sorted(e.name for e in it if e.is_dir() and not e.name.startswith("."))
    except OSError as err:
        raise DatasetError(f"cannot list {folder}: {err.strerror}", "data.root", "check the permissions") from None
    return {name: _count_images(str(folder / name)) for name in names}


def _require_classes(folder: Path, counts: dict[str, int]) -> None:
    if not counts or not sum(counts.values()):
        raise DatasetError(f"no images found under {folder}", "data.root",
                           "expected one sub-folder per class holding image files")
    if len(counts) == 1:
        raise DatasetError(f"{folder} holds a single class folder ({next(iter(counts))}): classification needs "
                           "at least two classes", "data.root", "add one sub-folder of images per class")
    for name, n in counts.items():
        if not n:
            raise DatasetError(f"class folder {folder / name} holds no image files", "data.root",
                               "remove the folder, or add images to it")


def _folder_counts(cfg: JobConfig) -> SplitCounts:
    root = Path(os.path.expanduser(cfg.data.root))
    top = _class_folders(root)
    if "train" in top and "val" in top:  # root/{train,val[,test]}/<class>/
        train = _class_folders(root / "train")
        _require_classes(root / "train", train)
        val = _class_folders(root / "val")
        if sorted(val) != sorted(train):
            raise DatasetError(f"class folders of {root / 'val'} differ from those of {root / 'train'}", "data.root",
                               "every split needs the same class folders (an empty one is fine in val/test)")
        return SplitCounts(tuple(train), tuple(train.values()), tuple(val[c] for c in train), str(root))
    if top and set(top) <= set(SPLITS):
        raise DatasetError(f"{root} holds only split folders ({', '.join(top)}) but not both train/ and val/",
                           "data.root", "add the missing split folder, or put the class folders directly under "
                                        "data.root to have them split automatically")
    _require_classes(root, top)
    return _fractions(tuple(top), tuple(top.values()), cfg, f"{root}: {sum(top.values())} images in {len(top)} classes")


def _fractions(classes: tuple, per_class: tuple, cfg: JobConfig, source: str) -> SplitCounts:
    """Train and val images per class: the job's split_indices arithmetic."""
    train, val = [], []
    for n in per_class:
        n_val = max(1, int(round(n * cfg.data.val_fraction)))
        train.append(max(0, n - n_val - int(round(n * cfg.data.test_fraction))))
        val.append(min(n, n_val))
    return SplitCounts(classes, tuple(train), tuple(val),
                       f"{source}, val_fraction {cfg.data.val_fraction:g}, test_fraction {cfg.data.test_fraction:g}")


def split_counts(cfg: JobConfig) -> SplitCounts | None:
    """Images per class and split for the sources that can be counted cheaply; None for the others."""
    source = cfg.data.source
    if source == "synthetic":
        return SplitCounts(("synthetic",), (cfg.data.n_train,), (cfg.data.n_val,), "data.n_train")
    if source == "digits":
        return _fractions(tuple(str(i) for i in range(10)), DIGITS_PER_CLASS, cfg, "digits: 1797 images")
    if source == "folder" and cfg.data.root:
        return _folder_counts(cfg)
    return None  # torchvision, hdf5, shards: sized by the job (counting them here means reading them)


def _selected(counts: SplitCounts, cfg: JobConfig) -> SplitCounts:
    """data.classes and data.max_per_class applied, as the job applies them."""
    names = cfg.data.classes
    if names and counts.classes != ("synthetic",):
        unknown = [n for n in names if str(n) not in counts.classes]
        if unknown:
            raise DatasetError(f"data.classes names classes the data does not have: {', '.join(map(str, unknown))}",
                               "data.classes", f"its classes are: {', '.join(counts.classes)}")
        keep = [counts.classes.index(str(n)) for n in names]
        counts = SplitCounts(tuple(counts.classes[i] for i in keep), tuple(counts.train[i] for i in keep),
                             tuple(counts.val[i] for i in keep), counts.source)
    if cfg.data.max_per_class and counts.classes != ("synthetic",):
        counts = replace(counts, train=tuple(min(n, cfg.data.max_per_class) for n in counts.train),
                         source=f"{counts.source}, max_per_class {cfg.data.max_per_class}")
    return counts


def global_batch(cfg: JobConfig, res: Resources) -> tuple[int, str]:
    """The job's global batch (trainer.batch_sizes) for the ranks the request starts, and how it was reached."""
    t, ranks = cfg.train, res.total_tasks
    if t.batch_scope == "global":
        batch, how = t.batch_size, f"train.batch_size {t.batch_size}, batch_scope global"
    else:
        batch, how = t.batch_size * ranks, f"train.batch_size {t.batch_size} per rank x {ranks} rank(s)"
    if batch % ranks:
        raise ConfigError(f"global batch {batch} does not split evenly over the {ranks} ranks the job starts",
                          "train.batch_size", f"use a multiple of {ranks}")
    return batch, how


def check_data_size(cfg: JobConfig, res: Resources, cache: dict) -> None:
    """The training split holds at least one global batch; class folders are there (counted once per data set)."""
    key = (cfg.data.source, cfg.data.root, cfg.data.n_train, cfg.data.n_val, cfg.data.val_fraction,
           cfg.data.test_fraction)
    if key not in cache:
        cache[key] = split_counts(cfg)
    batch, how = global_batch(cfg, res)
    if cache[key] is None:
        return
    counts = _selected(cache[key], cfg)
    if counts.n_train < batch:
        raise DatasetError(f"the training split has {counts.n_train} images, fewer than one global batch ({batch}: "
                           f"{how})", counts.source, "lower train.batch_size or add data")


__all__ = ["SplitCounts", "check_data_size", "global_batch", "split_counts"]
